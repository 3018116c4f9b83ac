"""Stacked vs one-after-another training of a DVGE eta grid, on made-up CelebA-sized codes.

Every member trains the real DVGE step (d's cached focus, g's focus per step, clip, Adam) on
180000 x 10 codes for --steps minibatches; the stacked run trains all members as one model,
the sequential run trains them one at a time. Prints members x steps per second for both,
their ratio, and the machine.

    python bench/bench_stacked.py --members 8 --steps 20
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from fairbench.stacked import StackedMLP, clip_perturbation, fit_stacked, predicted_logit_focus, stream


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads (torch {torch.__version__}, {platform.system()})"


def train(etas: list[tuple[float, float]], data: dict[str, torch.Tensor], args: argparse.Namespace) -> float:
    """Train the members in `etas` as one stack for args.steps steps; return the seconds taken."""
    members = len(etas)
    model = StackedMLP([10, *[args.width] * 5, 2], members, device=args.device)
    generators = [stream(0, "downstream") for _ in etas]
    model.reset(generators)
    eta1 = torch.tensor([e[0] for e in etas], device=args.device).view(-1, 1, 1)
    eta2 = torch.tensor([e[1] for e in etas], device=args.device).view(-1, 1, 1)

    def perturb(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        v = eta1 * data["focus"][rows] - eta2 * predicted_logit_focus(model, z)
        return z + clip_perturbation(v, z)

    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit_stacked(
        model, data["z"], data["y"], data["train"], data["val"], generators,
        epochs=1, batch_size=64, lr=1e-5, betas=(0.5, 0.9), perturb=perturb, max_steps_per_epoch=args.steps,
    )  # fmt: skip
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8, help="eta grid members")
    parser.add_argument("--steps", type=int, default=20, help="minibatch steps per member")
    parser.add_argument("--width", type=int, default=1000, help="hidden width (paper: 1000)")
    parser.add_argument("--rows", type=int, default=180000, help="latent codes (CelebA dvge train: 180000)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    z = torch.randn(args.rows, 10, generator=g)
    data = {
        "z": z.to(args.device),
        "y": (z[:, 0] > 0).long().to(args.device),
        "focus": (0.05 * torch.randn(args.rows, 10, generator=g)).to(args.device),
        "train": torch.arange(args.rows - 256, device=args.device),
        "val": torch.arange(args.rows - 256, args.rows, device=args.device),  # small: timing the steps
    }
    grid = [0.1, 0.2, 0.5, 1.0, 2.0]
    etas = [(grid[i % len(grid)], grid[(i // len(grid)) % len(grid)]) for i in range(args.members)]
    train(etas[:1], data, argparse.Namespace(**{**vars(args), "steps": 2}))  # warm-up
    stacked = train(etas, data, args)
    sequential = sum(train([eta], data, args) for eta in etas)
    work = args.members * args.steps
    print(f"device: {args.device}; machine: {machine(args.device)}")
    print(f"grid: {args.members} members x {args.steps} steps, batch 64, MLP 10-{args.width}x5-2, {args.rows} codes")
    print(f"stacked:    {work / stacked:8.1f} member-steps/s ({stacked:.1f} s)")
    print(f"sequential: {work / sequential:8.1f} member-steps/s ({sequential:.1f} s)")
    print(f"ratio stacked/sequential: {sequential / stacked:.2f}x")


if __name__ == "__main__":
    main()
