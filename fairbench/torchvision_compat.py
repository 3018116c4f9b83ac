"""The one place that imports torchvision.

On a CPU-only torch, a torchvision wheel built against CUDA torch fails at import because its
C++ ops (`torchvision::nms`, `torchvision::qnms`) are not registered. Defining the two op
schemas first lets the pure-Python parts (models, transforms) import; the C++ ops stay unavailable.
"""

from __future__ import annotations

import types

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None


def import_torchvision() -> types.ModuleType:
    """Import torchvision, defining its missing op schemas when its C++ extension did not load."""
    global _library
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            _library.define(schema)
        import sys

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision
    return torchvision
