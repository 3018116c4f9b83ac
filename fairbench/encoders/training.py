"""Training encoders: one alone (`train_encoder`), or several of one kind and input shape as one
batched model (`train_encoders`: the seeds of an encoder, FFVAE's alpha x gamma grid).

Every training draws from its own streams: its initial weights from the global generator
seeded with its seed (as every training in fairbench), its batches from a generator of that
seed, and the noise of each step (the reparameterisation's eps, FactorVAE's permutations) from
the stream `stream(seed, "encoder noise")`, `BLOCK` steps at a time. So a member of a stack
draws exactly what it draws alone; the stack maps the trainer's own phase losses over the
members (torch.func.vmap over their stacked weights) and descends their sum with one Adam per
phase, whose update is elementwise: member m's step is the step of its own loss. Members equal
their solo runs up to the rounding of batched kernels (tests/test_encoder_stacking.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from fairbench.data.base import TaskData
from fairbench.encoders.base import (
    Batch,
    Draws,
    EncoderTrainer,
    Values,
    attribute_count,
    batch_stream,
    task_labels,
)
from fairbench.encoders.catalog import TRAINERS
from fairbench.encoders.networks import VAE
from fairbench.train import Arithmetic, as_input, seed_everything, stream, to_float
from fairbench.train.members import Unstackable

# Steps of noise drawn (and copied to the device) at once: a constant, so that a training
# draws the same numbers whatever it is stacked with.
BLOCK = 256
# A loss log is read this many times over a training.
LOG_POINTS = 20

Log = Callable[[str], Any]
History = list[dict[str, float]]


def noise_blocks(trainer: EncoderTrainer, seed: int, device: str) -> Iterator[Draws]:
    """The training's noise, `BLOCK` steps at a time: name -> (BLOCK, *shape) on `device`,
    drawn on the CPU from the training's own stream (the same numbers on every device)."""
    generator = stream(seed, "encoder noise")
    spec = trainer.noise(trainer.settings["batch_size"])
    while True:
        block = {}
        for name in sorted(spec):
            kind, shape = spec[name]
            draw = torch.randn if kind == "normal" else torch.rand
            block[name] = draw((BLOCK, *shape), generator=generator)
        yield {name: values.to(device) for name, values in block.items()}


def per_step(blocks: Iterator[Draws], dim: int = 0) -> Iterator[Draws]:
    """Each step's draws, read off blocks of `BLOCK` steps along `dim`."""
    for block in blocks:
        for at in range(BLOCK):
            yield {name: values.select(dim, at) for name, values in block.items()}


@dataclass
class _Training:
    """One encoder's training, set up as it is alone: its trainer (weights initialised from its
    seed), its train rows (on the device) and the generator of their order, its labels and its
    noise."""

    task: TaskData
    config: dict[str, Any]
    seed: int
    trainer: EncoderTrainer
    train: torch.Tensor
    order: torch.Generator
    labels: dict[str, torch.Tensor]
    noise: Iterator[Draws]

    @classmethod
    def start(
        cls, task: TaskData, config: dict[str, Any], seed: int, device: str, precision: str, compile: bool
    ) -> _Training:
        generator = seed_everything(seed)
        arithmetic = Arithmetic(precision, device, compile)
        kind = TRAINERS[config["name"]]
        # Rows shorter than a batch train on full-length batches of all of them.
        config = {**config, "batch_size": min(config["batch_size"], len(task.splits["train"]))}
        deterministic = kind.deterministic(config, attribute_count(task))
        vae = arithmetic.place(VAE(tuple(task.x.shape[1:]), config["z_dim"], config["width"], deterministic))
        trainer = kind(vae, config, device, arithmetic)
        train = torch.from_numpy(task.splits["train"]).to(device)
        if task.x.ndim == 2:
            # Constant features get unit scale rather than a division by zero.
            std = to_float(task.x, device)[train].std(0)
            trainer.values["feature_std"] = torch.where(std > 0, std, torch.ones_like(std))
        labels = {k: torch.from_numpy(v).to(device) for k, v in task_labels(task, kind.supervision).items()}
        return cls(task, config, seed, trainer, train, generator, labels, noise_blocks(trainer, seed, device))

    def label(self, others: Sequence[_Training]) -> str:
        """The member's name in a stack's log: its seed and the loss weights that vary."""
        varying = [w for w in self.trainer.weights if len({o.config[w] for o in others}) > 1]
        return " ".join([f"seed {self.seed}", *(f"{w} {self.config[w]}" for w in varying)])


def train_encoder(
    data: TaskData,
    config: dict[str, Any],
    iterations: int,
    seed: int,
    device: str,
    log: Log,
    precision: str = "fp32",
    compile: bool = False,
) -> tuple[VAE, History]:
    """Train a VAE of `config` on the train split for `iterations` steps in the engine's
    arithmetic (`precision`, `compile`); return it and a loss log (the losses read every 1/20
    of the run)."""
    run = _Training.start(data, config, seed, device, precision, compile)
    trainer = run.trainer
    x = to_float(data.x, device)
    stream_ = batch_stream(run.train, run.config["batch_size"], run.order)

    def next_batch() -> Batch:
        rows = next(stream_)
        inputs = trainer.arithmetic.layout(as_input(x[rows]))
        return (inputs, {k: v[rows] for k, v in run.labels.items()}) if run.labels else inputs

    history: History = []
    logged = _Logger(config["name"], iterations, log)
    trainer.vae.train()
    noise = per_step(run.noise)
    for iteration in range(1, iterations + 1):
        losses = trainer.step(next_batch, next(noise))
        if logged.due(iteration):
            history.append(logged.line(iteration, {k: v.item() for k, v in losses.items()}))
    trainer.vae.eval()
    return trainer.vae, history


def train_encoders(
    tasks: Sequence[TaskData],
    configs: Sequence[dict[str, Any]],
    iterations: int,
    seeds: Sequence[int],
    device: str,
    log: Log,
    precision: str = "fp32",
    compile: bool = False,
) -> list[tuple[VAE, History]]:
    """Train several encoders (task, config, seed each) for `iterations` steps: as one stacked
    model where they are one kind on inputs of one shape, differing at most in their loss
    weights (`EncoderTrainer.weights`); else, or for one encoder, one by one. Each returned
    encoder is what `train_encoder` gives it alone, up to rounding."""
    solo = list(zip(tasks, configs, seeds, strict=True))
    if len(solo) > 1:
        try:
            return _train_stacked(solo, iterations, device, log, precision, compile)
        except Unstackable as reason:
            log(f"encoders train one by one: {reason}")
    return [train_encoder(t, c, iterations, s, device, log, precision, compile) for t, c, s in solo]


def _train_stacked(
    members: list[tuple[TaskData, dict[str, Any], int]],
    iterations: int,
    device: str,
    log: Log,
    precision: str,
    compile: bool,
) -> list[tuple[VAE, History]]:
    kind = TRAINERS[members[0][1]["name"]]
    fixed = [{k: v for k, v in config.items() if k not in kind.weights} for _, config, _ in members]
    if any(f != fixed[0] for f in fixed):
        raise Unstackable("their settings differ in more than their loss weights")
    if len({task.x.shape[1:] for task, _, _ in members}) > 1:
        raise Unstackable("their inputs differ in shape")
    if len({attribute_count(task) for task, _, _ in members}) > 1:
        raise Unstackable("their sensitive expressions combine different numbers of attributes")
    runs = [_Training.start(task, config, seed, device, precision, compile) for task, config, seed in members]
    if len({len(run.train) for run in runs}) > 1:
        raise Unstackable("their train splits differ in size")
    stack = _Stack(runs, device)
    histories: list[History] = [[] for _ in runs]
    names = [run.label(runs) for run in runs]
    logged = _Logger(f"{kind.name} x{len(runs)}", iterations, log)
    for iteration in range(1, iterations + 1):
        losses = stack.step()
        if logged.due(iteration):
            values = {name: value.tolist() for name, value in losses.items()}
            for index, history in enumerate(histories):
                history.append(logged.line(iteration, {k: v[index] for k, v in values.items()}, names[index]))
    stack.unstack()
    for run in runs:
        run.trainer.vae.eval()
    return [(run.trainer.vae, history) for run, history in zip(runs, histories, strict=True)]


class _Stack:
    """The members' networks as one stacked model: their weights stacked per phase's optimiser,
    each phase's loss mapped over the members, their batches, labels and noise gathered per step."""

    def __init__(self, runs: list[_Training], device: str) -> None:
        self.runs = runs
        first = runs[0].trainer
        self.phases, self.arithmetic = first.phases, first.arithmetic
        params, buffers = stack_module_state([run.trainer.nets for run in runs])
        self.params = params
        self.state = {f"nets.{name}": tensor for name, tensor in {**params, **buffers}.items()}
        self.optimisers = [
            torch.optim.Adam(
                [t for name, t in params.items() if name.split(".")[0] in phase.nets],
                lr=first.settings[phase.lr],
                betas=(first.settings[phase.betas[0]], first.settings[phase.betas[1]]),
            )
            for phase in first.phases
        ]
        template = copy.copy(first)  # the phase losses, on networks without weights of their own
        template.nets = copy.deepcopy(first.nets).to("meta")
        losses = _PhaseLosses(template)
        self.compute = [
            self.arithmetic.compiled(vmap(_member_phase(losses, index))) for index in range(len(self.phases))
        ]
        # Inputs once per distinct input array (the seeds of one dataset share theirs).
        distinct: list[TaskData] = []
        for run in runs:
            if not any(other.input_key == run.task.input_key for other in distinct):
                distinct.append(run.task)
        which = [next(i for i, t in enumerate(distinct) if t.input_key == run.task.input_key) for run in runs]
        inputs = [to_float(task.x, device) for task in distinct]
        self.x = inputs[0][None] if len(inputs) == 1 else torch.stack(inputs)  # (tasks, N, ...)
        self.which = torch.tensor(which, device=device)[:, None]
        self.member = torch.arange(len(runs), device=device)[:, None]
        self.labels = {name: torch.stack([run.labels[name] for run in runs]) for name in runs[0].labels}
        dtype = torch.get_default_dtype()
        self.values: Values = {
            name: torch.stack([torch.as_tensor(run.trainer.values[name], dtype=dtype, device=device) for run in runs])
            for name in first.values
        }
        self.noise = per_step(self._noise_blocks(), dim=1)
        self.train = torch.stack([run.train for run in runs])  # (M, N)
        self.size = first.settings["batch_size"]
        self.order = self.train  # each member's current pass over its rows
        self.at = len(self.train[0])  # a pass is drawn first

    def rows(self) -> torch.Tensor:
        """Each member's next batch (M, B), as `batch_stream` draws it alone: full batches of
        a pass over the rows permuted by the member's generator, all members' pass in one copy."""
        count = len(self.train[0])
        if self.at + self.size > count:
            orders = torch.stack([torch.randperm(count, generator=run.order) for run in self.runs])
            self.order, self.at = self.train.gather(1, orders.to(self.train.device)), 0
        self.at += self.size
        return self.order[:, self.at - self.size : self.at]

    def batch(self) -> Batch:
        rows = self.rows()
        inputs = as_input(self.x[self.which, rows])
        if not self.labels:
            return inputs
        return inputs, {name: labels[self.member, rows] for name, labels in self.labels.items()}

    def _noise_blocks(self) -> Iterator[Draws]:
        """The members' noise blocks stacked: name -> (M, BLOCK, *shape)."""
        while True:
            blocks = [next(run.noise) for run in self.runs]
            yield {name: torch.stack([block[name] for block in blocks]) for name in blocks[0]}

    def step(self) -> dict[str, torch.Tensor]:
        """One training step of every member; its named losses, (M,) each, detached."""
        noise = next(self.noise)
        terms: dict[str, torch.Tensor] = {}
        carry: Draws = {}
        batch: Batch | None = None
        for phase, compute, optimiser in zip(self.phases, self.compute, self.optimisers, strict=True):
            if batch is None or phase.fresh_batch:
                batch = self.batch()
            with self.arithmetic.autocast():
                loss, named, carry = compute(self.state, batch, noise, carry, self.values)
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            terms |= {name: value.detach() for name, value in named.items()}
        return terms

    @torch.no_grad()
    def unstack(self) -> None:
        """Each member's slice of the stacked weights into its own networks."""
        for index, run in enumerate(self.runs):
            for name, tensor in run.trainer.nets.named_parameters():
                tensor.copy_(self.params[name][index])


class _PhaseLosses(nn.Module):
    """The trainer's phase losses as a module's forward, for functional_call to swap the
    networks' weights for a member's."""

    def __init__(self, trainer: EncoderTrainer) -> None:
        super().__init__()
        self.nets, self.trainer = trainer.nets, trainer

    def forward(self, phase: int, batch: Batch, noise: Draws, carry: Draws, values: Values) -> Any:
        return self.trainer.phase_loss(phase, batch, noise, carry, values)


def _member_phase(losses: _PhaseLosses, phase: int) -> Callable[..., Any]:
    def member(state: dict, batch: Batch, noise: Draws, carry: Draws, values: Values) -> Any:
        return functional_call(losses, state, (phase, batch, noise, carry, values))

    return member


class _Logger:
    """The loss log's rhythm and lines: every 1/LOG_POINTS of the run and at its end."""

    def __init__(self, name: str, iterations: int, log: Log) -> None:
        self.name, self.iterations, self.log = name, iterations, log
        self.every = max(1, iterations // LOG_POINTS)
        self.started = time.perf_counter()

    def due(self, iteration: int) -> bool:
        return iteration % self.every == 0 or iteration == self.iterations

    def line(self, iteration: int, losses: dict[str, float], member: str = "") -> dict[str, float]:
        self.log(
            f"{self.name}{f' [{member}]' if member else ''} {iteration}/{self.iterations} "
            + " ".join(f"{k} {v:.3f}" for k, v in losses.items())
            + f" ({time.perf_counter() - self.started:.0f} s)"
        )
        return {"iteration": iteration, **losses}
