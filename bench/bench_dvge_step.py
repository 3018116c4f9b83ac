"""Milliseconds per DVGE model-step: the released code's loop vs fairbench's step, 1 and 2 threads.

One step = batch 64 of CelebA-sized codes (10 dims) through the Table 3 MLP g (10-1000x5-2,
LeakyReLU 0.2): the downstream focus F_g through the current g, the perturbed code z', the
cross-entropy, backward and Adam. Loops, timed interleaved in one run:

- released: the released DVGE code's `train_ot_cls` loop, rebuilt from its cost structure
  (github.com/DexterJZ/DVGE, solver.py and saliency/): nn.Sequential d and g, FullGrad (backward
  hooks on every Linear) for BOTH d and g every step, Adam with PyTorch's default CPU update,
  the per-step `.item()` and softmax accuracy bookkeeping. Its data loader's file reads are
  left out (the codes are one in-memory tensor here as well), which favours the released code.
- before: fairbench's step as it was before issue 8's speed work (batched matmuls through
  MKL), i.e. `fit_stacked` with the oneDNN kernels switched off.
- fairbench: `fit_stacked` with one member and DVGE's perturbation (F_d cached, F_g per step,
  focus `loss`, clip), exactly as `DVGE.run_eta_grid` calls it.
- val pass: the per-epoch validation pass (18,000 rows, the dvge protocol's val split of
  CelebA), in ms per pass and amortised over an epoch's 2,532 steps.

Prints medians over --repeats with their range, the machine and its load; `--profile` adds the
top operators of fairbench's step. The machine is shared: compare ratios within one run, and
on a loaded machine use `--threads 1 --clock cpu`. Reference, before issue 8's speed work
(issue 8, same 2-core AMD EPYC): fairbench 22.5 ms vs released 62 ms per step at 2 threads
(2.7x), 2x at 1 thread; "before" re-measures that step in the same run.

    python bench/bench_dvge_step.py --steps 30 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_stacked import machine  # this folder: run as python bench/bench_dvge_step.py
from torch import nn

import fairbench.nets.stacked
from fairbench.methods.families.latent.explanation import clip_perturbation, predicted_loss_focus
from fairbench.nets.stacked import StackedMLP
from fairbench.train.seeding import stream
from fairbench.train.stacked import accuracy, fit_stacked

# Wall time by default; --clock cpu: this process's CPU time (all its threads), which on a loaded
# machine stays close to the idle machine's wall time for one thread (not for two: it counts
# OpenMP's spinning too).
clock = time.perf_counter

WIDTH, DEPTH, BATCH, ROWS, VAL_ROWS, STEPS_PER_EPOCH = 1000, 5, 64, 180_000, 18_000, 2532


def released_net() -> nn.Sequential:
    """The released code's Discriminator: Linear/LeakyReLU(0.2) stack, N(0, 0.02) weights."""
    sizes = [10, *[WIDTH] * DEPTH, 2]
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if index < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2, True))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0, 0.02)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class FullGradInput:
    """FullGrad as the released code uses it: backward hooks on every Linear collect the
    feature gradients (unused by DVGE, but computed), the saliency is the input gradient of
    the summed predicted logit."""

    def __init__(self, net: nn.Module) -> None:
        self.net, self.grads = net, []
        for module in net.modules():
            if isinstance(module, nn.Linear):
                module.register_backward_hook(self._hook)

    def _hook(self, module: nn.Module, grad_in: tuple, grad_out: tuple) -> None:
        self.grads.append(grad_out[0])

    def saliency(self, z: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        z = z.requires_grad_()
        out = self.net(z)
        target = out.data.max(1, keepdim=True)[1]
        scalar = -1.0 * F.nll_loss(out, target.flatten(), reduction="sum")
        self.grads = []
        self.net.zero_grad()
        return torch.autograd.grad(scalar, z)[0]


def released_steps(data: dict[str, torch.Tensor], steps: int) -> float:
    """Seconds for `steps` steps of the released `train_ot_cls` loop (eta 0.1, 0.4 fixed)."""
    torch.manual_seed(0)
    d, g = released_net(), released_net()
    d.eval()
    sens_fg, ot_fg = FullGradInput(d), FullGradInput(g)
    optimiser = torch.optim.Adam(g.parameters(), lr=1e-5, betas=(0.5, 0.9))
    order = torch.randperm(len(data["train"]))
    start = clock()
    correct = total = 0
    for step in range(steps):
        rows = data["train"][order[step * BATCH : (step + 1) * BATCH]]
        z, y = data["z"][rows], data["y"][rows]
        sens = sens_fg.saliency(z).data
        ot = ot_fg.saliency(z).data
        new_z = z + 0.1 * sens - 0.4 * ot
        g.train()
        out = g(new_z)
        loss = F.cross_entropy(out, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        _ = loss.item()
        results = F.softmax(out, 1).data.max(1, keepdim=True)[1]
        correct += torch.sum(torch.eq(results, y[:, None])).item()
        total += len(y)
    return clock() - start


def fairbench_steps(data: dict[str, torch.Tensor], steps: int) -> float:
    """Seconds for `steps` steps of fit_stacked with one member, as DVGE.run_eta_grid runs it,
    without its set-up (model, initial weights, optimiser), which the released loop's timing
    leaves out as well: a one-step run's time is subtracted."""
    return fit_seconds(data, steps + 1) - fit_seconds(data, 1)


def fit_seconds(data: dict[str, torch.Tensor], steps: int) -> float:
    model = StackedMLP([10, *[WIDTH] * DEPTH, 2], 1)
    generators = [stream(0, "downstream")]
    model.reset(generators)
    eta1, eta2 = torch.full((1, 1, 1), 0.1), torch.full((1, 1, 1), 0.4)

    def perturb(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        v = eta1 * data["focus"][rows] - eta2 * predicted_loss_focus(model, z)
        return z + clip_perturbation(v, z)

    start = clock()
    fit_stacked(
        model,
        data["z"],
        data["y"],
        data["train"],
        data["val_few"],
        generators,
        epochs=1,
        batch_size=BATCH,
        lr=1e-5,
        betas=(0.5, 0.9),
        perturb=perturb,
        max_steps_per_epoch=steps,
    )
    return clock() - start


def before_steps(data: dict[str, torch.Tensor], steps: int) -> float:
    """fairbench_steps with the oneDNN linears off: the batched-matmul step of before issue 8."""
    available = fairbench.nets.stacked.onednn_available
    fairbench.nets.stacked.onednn_available = lambda: False
    try:
        return fairbench_steps(data, steps)
    finally:
        fairbench.nets.stacked.onednn_available = available


def eval_pass(data: dict[str, torch.Tensor]) -> float:
    """Seconds for one validation pass of fit_stacked (accuracy on the val rows)."""
    model = StackedMLP([10, *[WIDTH] * DEPTH, 2], 1).reset([stream(0, "downstream")])
    start = clock()
    accuracy(model, data["z"], data["y"], data["val"])
    return clock() - start


def main() -> None:
    # register_backward_hook is deprecated (it warns every forward); the released code uses it.
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*non-full backward hook")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per loop and thread count (median)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", action="store_true", help="also print the step's top operators")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time | process CPU time")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    g = torch.Generator().manual_seed(0)
    z = torch.randn(ROWS, 10, generator=g)
    data = {
        "z": z,
        "y": (z[:, 0] > 0).long(),
        "focus": 0.05 * torch.randn(ROWS, 10, generator=g),
        "train": torch.arange(ROWS - VAL_ROWS),
        "val": torch.arange(ROWS - VAL_ROWS, ROWS),
        "val_few": torch.arange(ROWS - 64, ROWS),  # the step timing leaves the val pass to `eval`
    }
    print(f"machine: {machine('cpu').split(',')[0]}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(
        f"batch {BATCH}, MLP 10-{WIDTH}x{DEPTH}-2, {args.steps} steps x {args.repeats} repeats (medians), "
        f"{args.clock} clock"
    )
    loops: dict[str, Callable[[], float]] = {
        "released": lambda: 1000 * released_steps(data, args.steps) / args.steps,
        "before": lambda: 1000 * before_steps(data, args.steps) / args.steps,
        "fairbench": lambda: 1000 * fairbench_steps(data, args.steps) / args.steps,
        "val pass": lambda: 1000 * eval_pass(data),
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in ("released", "before", "fairbench"):  # warm-up
            {"released": released_steps, "before": before_steps, "fairbench": fairbench_steps}[name](data, 3)
        ms: dict[str, list[float]] = {name: [] for name in loops}
        loads = []
        for _ in range(args.repeats):  # interleaved, so load changes hit every loop alike
            loads.append(os.getloadavg()[0])
            for name, loop in loops.items():
                ms[name].append(loop())
        med = {k: statistics.median(v) for k, v in ms.items()}
        amortised = med["val pass"] / STEPS_PER_EPOCH
        print(f"threads {threads} (1-min load average during the run: {min(loads):.2f}-{max(loads):.2f}):")
        for name in ("released", "before", "fairbench"):
            ratio = f" -> {med['released'] / med[name]:.2f}x the released loop" if name != "released" else ""
            print(f"  {name + ':':14}{med[name]:7.1f} ms/step (range {min(ms[name]):.1f}-{max(ms[name]):.1f}){ratio}")
        print(
            f"  {'val pass:':14}{med['val pass']:7.1f} ms per epoch ({VAL_ROWS} rows), {amortised:.2f} ms/step "
            f"over {STEPS_PER_EPOCH} steps; before's val pass is not timed apart"
        )
        with_val = med["fairbench"] + amortised
        ratio = med["released"] / with_val
        print(f"  fairbench incl. val pass: {with_val:.1f} ms/step -> {ratio:.2f}x the released loop")
    if args.profile:
        torch.set_num_threads(args.threads[0])
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fairbench_steps(data, args.steps)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
