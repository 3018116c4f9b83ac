"""The method families: shared bases that concrete methods (fairbench/methods/<name>.py) build on.

- `trained`: any method the engine trains on minibatches (model + loss + scores);
- `branched`: one branched net, task head and attribute heads behind gradient reversal (ERM,
  ADT, GRAD, GBA);
- `classifier`: one classifier under a debiasing objective, bias labels at hand (LfF, GroupDRO,
  DomainInd);
- `latent`: methods on a frozen encoder's latent code (DVGE and its baselines).
"""
