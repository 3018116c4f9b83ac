"""Device strings (auto | cpu | cuda | cuda:<i>): checked once on input, turned into a concrete
device in one place."""

from __future__ import annotations

from fairbench.errors import FairbenchError


def check_device(device: str) -> None:
    """A one-line error for a device string that is none of auto, cpu, cuda, cuda:<index>."""
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise FairbenchError(f"--device '{device}': use auto, cpu, cuda or cuda:<index>")


def resolve_device(device: str, index: int = 0) -> str:
    """The concrete device (cpu or cuda:<i>) of worker `index` on this machine: `auto` is a GPU
    when one is visible, else the CPU; `cuda` shares the visible GPUs round-robin; cpu and
    cuda:<i> are taken as given."""
    if device not in ("auto", "cuda"):
        return device
    import torch

    count = torch.cuda.device_count()
    if count:
        return f"cuda:{index % count}"
    if device == "auto":
        return "cpu"
    raise FairbenchError("--device cuda: no CUDA device is visible; use --device cpu or auto")


def parse_devices(spec: str, visible: int | None = None) -> tuple[str, ...]:
    """`--devices`: `all` or comma-separated CUDA indices -> ('cuda:0', ...). `visible` is the
    number of GPUs (torch's count when None; given in tests, which have no GPU)."""
    if visible is None:
        import torch

        visible = torch.cuda.device_count()
    if spec == "all":
        if not visible:
            raise FairbenchError("--devices all: no CUDA device is visible; use --device cpu")
        return tuple(f"cuda:{i}" for i in range(visible))
    parts = [part.strip() for part in spec.split(",")]
    if not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
        raise FairbenchError(f"--devices '{spec}': use distinct CUDA indices such as 0,1,2,3, or all")
    absent = [part for part in parts if int(part) >= visible]
    if absent:
        raise FairbenchError(f"--devices '{spec}': {visible} CUDA device(s) visible, no index {', '.join(absent)}")
    return tuple(f"cuda:{part}" for part in parts)
