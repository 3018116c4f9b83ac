"""Tensors for training: inputs on the device, shuffled minibatches, batched inference."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering all n rows once (the last batch may be smaller)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def to_float(x: np.ndarray, device: str) -> torch.Tensor:
    """Inputs to the device once: images stay uint8 there and are scaled per batch; other inputs
    in torch's default dtype (float32; the tests' float64 runs tell rounding from mistakes)."""
    with warnings.catch_warnings():
        # a read-only memory map (the image caches) is only ever read: no copy of the dataset
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    return tensor.to(device) if tensor.dtype == torch.uint8 else tensor.to(device, torch.get_default_dtype())


def as_input(batch: torch.Tensor) -> torch.Tensor:
    return batch.to(torch.get_default_dtype()).div_(255.0) if batch.dtype == torch.uint8 else batch


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities from a model whose (first) output is class logits: P(y = 1), shape (n,),
    for 2 classes; shape (n, k) for k > 2."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        logits = model(as_input(x[start : start + batch_size]))
        logits = logits[0] if isinstance(logits, tuple) else logits
        probabilities = torch.softmax(logits.float(), dim=1)
        out.append((probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def embed(
    module: torch.nn.Module,
    x: torch.Tensor,
    chunk: int = 4096,
    through: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """`module` (or its method `through`) in eval mode on the rows of `x`, in chunks, as a float32
    array: a learned representation (a trunk's features, an encoder's code) for a head fit
    outside torch."""
    module.eval()
    apply = through or module
    return torch.cat([apply(as_input(x[s : s + chunk])).float().cpu() for s in range(0, len(x), chunk)]).numpy()
