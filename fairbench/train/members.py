"""Members trained together: several trainings of one method whose networks share a shape (the
seeds and grid points of a sweep), run as one batched model: the parameters of the members'
networks stacked (torch.func.stack_module_state) and the method's loss mapped over them (vmap).

Each member keeps what it has alone: its Trainer (seeded from its own seed, so its initial
weights and data order are its own), its data, its selection bookkeeping (`Checkpoints`). The
stack batches only the arithmetic: the loss is computed per member, their sum is descended, and
the optimiser's update is elementwise (Adam, SGD with momentum, weight decay), so member m's
gradient and step are those of its own loss. A member's numbers in a stack equal its numbers
alone up to floating-point differences between batched and plain kernels (tests/test_members.py).
Each kernel launch serves all M members, which is what a GPU left idle by one small network needs.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from fairbench.train.engine import Batch, Checkpoints, Fit, Losses, Trainer

# The loss of one member's batch, given its values of the parameters that differ between
# members (0-d tensors under vmap): the method's loss with those values.
MemberLoss = Callable[[nn.Module, Batch, dict[str, torch.Tensor]], Losses]


class Unstackable(ValueError):
    """The members cannot train in lockstep (their data or batches differ in shape); train them
    one by one."""


@dataclass
class Member:
    """One training of a stack: its trainer (seeded), its model (built and placed after that
    seeding), its values of the parameters that differ between members, how it scores its
    validation rows (None where the selection rule reads no scores), how it draws an epoch's
    batches (positions into its training rows), and the name its log lines carry."""

    trainer: Trainer
    model: nn.Module
    values: dict[str, float]
    score_val: Callable[[], np.ndarray] | None
    batches: Callable[[int], Iterable[torch.Tensor]]
    name: str = ""


def fit_members(
    members: Sequence[Member],
    loss: MemberLoss,
    optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    *,
    epochs: int,
    select: str = "last",
    attributes: Sequence[str] = (),
    min_batch: int = 1,
    schedulers: Callable[[torch.optim.Optimizer], Sequence[torch.optim.lr_scheduler.LRScheduler]] = lambda _: (),
    patience: int = 0,
) -> list[Fit]:
    """Train the members for `epochs` epochs in lockstep; each member's model is left at the
    checkpoint its `select` rule keeps, as `Trainer.fit` leaves a model trained alone.

    `optimizer(module)` builds the optimiser over a module of the members' structure whose
    parameters are the stacked tensors; it must update elementwise. Step k of an epoch feeds
    member m its own k-th batch; batches of fewer than `min_batch` rows are skipped. Raises
    Unstackable when the members' tensors differ in shape (before any training) or their epochs
    in batch sizes.
    """
    first = members[0].trainer
    if _tied(members[0].model):
        # functional_call's weight tying gave a second name's buffer wrong values under vmap
        raise Unstackable("the network registers one tensor under two names")
    sources = _Sources([m.trainer for m in members])
    stacked, buffers = stack_module_state([m.model for m in members])
    stacked = {name: nn.Parameter(tensor) for name, tensor in stacked.items()}
    base = copy.deepcopy(members[0].model).to("meta")
    network = _LossOf(base, loss)
    view = _MemberTask(first)
    values = {
        key: torch.tensor([m.values[key] for m in members], dtype=torch.get_default_dtype(), device=first.device)
        for key in members[0].values
    }

    # The network's weights and buffers under their names in `network`, named once
    state = {f"model.{name}": tensor for name, tensor in chain(stacked.items(), buffers.items())}

    def member_loss(state: dict, values: dict, positions: torch.Tensor, rows: torch.Tensor, given: dict) -> Losses:
        batch = Batch(view, positions, rows, given)  # type: ignore[arg-type]
        return functional_call(network, state, (batch, values))

    compute = first.arithmetic.compiled(vmap(member_loss))
    optimiser = optimizer(_holding(base, stacked))
    scheduled = list(schedulers(optimiser))
    checkpoints = [Checkpoints(m.trainer, select, m.score_val, attributes, patience, m.name) for m in members]
    for epoch in range(1, epochs + 1):
        base.train()
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for positions in _epoch_positions(members, first.device):
            if positions.shape[1] < min_batch:
                continue
            rows, given = sources.gather(positions)
            with first.autocast():
                losses = compute(state, values, positions, rows, given)
            losses = losses if isinstance(losses, dict) else {"loss": losses}
            optimiser.zero_grad(set_to_none=True)
            losses["loss"].sum().backward()
            optimiser.step()
            for key, value in losses.items():
                value = value.detach()
                sums[key] = sums[key] + value if key in sums else value.clone()  # a graph's output is reused
            steps += 1
        for scheduler in scheduled:
            scheduler.step()
        _unstack(stacked, buffers, members)
        means = {key: [value / steps for value in total.tolist()] for key, total in sums.items()} if steps else {}
        for index, (member, kept) in enumerate(zip(members, checkpoints, strict=True)):
            if not kept.stopped:
                kept.end_epoch(member.model, epoch, epochs, {key: means[key][index] for key in means})
        if all(kept.stopped for kept in checkpoints):
            break
    return [kept.finish(member.model) for member, kept in zip(members, checkpoints, strict=True)]


class _LossOf(nn.Module):
    """The method's loss as a module's forward, for functional_call to swap the network's weights."""

    def __init__(self, model: nn.Module, loss: MemberLoss) -> None:
        super().__init__()
        self.model, self.member_loss = model, loss

    def forward(self, batch: Batch, values: dict[str, torch.Tensor]) -> Losses:
        return self.member_loss(self.model, batch, values)


class _MemberTask:
    """What a stacked member's batch reads of its trainer under vmap: the engine's settings (the
    first member's); the batch's tensors are gathered already (`_Sources`)."""

    def __init__(self, first: Trainer) -> None:
        self.data, self.device, self.ctx = first.data, first.device, first.ctx
        self.arithmetic = copy.copy(first.arithmetic)
        self.arithmetic.channels_last = False  # a memory format is not a per-member notion

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the stacked step runs under the first member's


class _Sources:
    """The members' task tensors, once per distinct task (members of one seed share theirs), and
    the gathering of each step's batch rows for every member at once."""

    def __init__(self, trainers: list[Trainer]) -> None:
        distinct: list[Trainer] = []
        index = []
        for trainer in trainers:
            same = [k for k, other in enumerate(distinct) if other.shares_rows(trainer)]
            if not same:
                distinct.append(trainer)
            index.append(same[0] if same else len(distinct) - 1)
        first = distinct[0]
        self.names = ["x", "y"] + (["bias"] if first.data.bias is not None else [])
        self.names += [f"group:{name}" for name in first.data.protected]
        self.train = self._stacked([t.rows("train") for t in distinct], "train rows")
        self.tensors = {name: self._stacked([_tensor(t, name) for t in distinct], name) for name in self.names}
        for trainer, k in zip(trainers, index, strict=True):  # each member scores its task's slice: one copy
            trainer.x = self.tensors["x"][k] if len(distinct) > 1 else self.tensors["x"]
        # None when every member reads one task; else each member's task
        self.index = torch.tensor(index, device=first.device)[:, None] if len(distinct) > 1 else None

    def gather(self, positions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each member's rows for its `positions` (M, B) into its training rows, and their tensors."""
        rows = self._take(self.train, positions)
        return rows, {name: self._take(tensor, rows) for name, tensor in self.tensors.items()}

    def _take(self, tensor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return tensor[rows] if self.index is None else tensor[self.index, rows]

    @staticmethod
    def _stacked(parts: list[torch.Tensor], name: str) -> torch.Tensor:
        if len(parts) == 1:
            return parts[0]
        if len({tuple(p.shape) for p in parts}) > 1:
            raise Unstackable(f"the members' {name} differ in shape ({', '.join(str(tuple(p.shape)) for p in parts)})")
        return torch.stack(parts)


def _tensor(trainer: Trainer, name: str) -> torch.Tensor:
    if name.startswith("group:"):
        return trainer.group(name.removeprefix("group:"))
    return getattr(trainer, name)


def _holding(model: nn.Module, parameters: dict[str, nn.Parameter]) -> nn.Module:
    """A copy of `model`'s structure whose parameters are the stacked ones: what the optimiser
    steps, so that a method's `optimizer(model)` (parameter groups by submodule included) builds
    the same optimiser over the stack as over one member."""
    holder = copy.deepcopy(model)
    for name, parameter in parameters.items():
        owner, _, leaf = name.rpartition(".")
        setattr(holder.get_submodule(owner), leaf, parameter)
    return holder


def _tied(model: nn.Module) -> bool:
    """Whether the model registers a parameter or buffer under two names."""
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return len({id(tensor) for _, tensor in named}) < len(named)


def _epoch_positions(members: Sequence[Member], device: str) -> list[torch.Tensor]:
    """Each step's (M, B) positions of an epoch, every member's drawn from its own stream, on the
    device in one copy (see fairbench.train.engine.to_device)."""
    draws = [list(m.batches(len(m.trainer.rows("train")))) for m in members]
    sizes = {tuple(len(b) for b in batches) for batches in draws}
    if len(sizes) > 1:
        raise Unstackable("the members drew epochs of different batch sizes")
    steps = sizes.pop()
    if not steps:
        return []
    stacked = torch.stack([torch.cat(batches) for batches in draws]).to(device)
    return list(stacked.split(list(steps), dim=1))


@torch.no_grad()
def _unstack(stacked: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], members: Sequence[Member]) -> None:
    """Each member's slice of the stacked weights and buffers into its own model (for scoring
    and checkpoints)."""
    for index, member in enumerate(members):
        for name, tensor in chain(member.model.named_parameters(), member.model.named_buffers()):
            tensor.copy_((stacked[name] if name in stacked else buffers[name])[index])
