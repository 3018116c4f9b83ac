"""Whether the executor trains a sweep's stackable members as one stacked model on a device."""

from __future__ import annotations

STACK_MODES = ("auto", "on", "off")

# Device types on which `auto` stacks. CUDA: one small model leaves the GPU idle, M members
# fill it. CPU: a 64 x 1000 x 1000 product already keeps the cores busy, so stacking DVGE's g
# only adds memory traffic (a 20-member grid trained at 0.59-0.77x the speed of its members one
# by one; bench/bench_stacked.py); 10 stacked seeds of LfF's MLP did train 1.5x the member-epochs
# of one alone on 2 cores (bench/bench_gpu.py --device cpu), but solo units spread over
# --workers too, and a solo job's numbers are bit-identical to every earlier CPU run's, where a
# member's differ from them by float32 rounding.
STACKING_PAYS = frozenset({"cuda"})


def should_stack(mode: str, device: str) -> bool:
    """Train stackable sweep members as one model on `device` ("cpu", "cuda:1", ...)?

    mode "on" / "off" force it; "auto" stacks where stacking pays: a fixed rule per device
    type, not a timing, so that the plan never depends on the load of a shared machine.
    """
    if mode not in STACK_MODES:
        raise ValueError(f"stack mode {mode!r}: use one of {', '.join(STACK_MODES)}")
    return mode == "on" or (mode == "auto" and device.split(":")[0] in STACKING_PAYS)
