"""Stacked vs one-after-another vs `stack: auto` training of a DVGE eta grid, on made-up
CelebA-sized codes.

Every member trains the real DVGE step (d's cached focus, g's focus per step, clip, Adam) on
180000 x 10 codes for --steps minibatches; the stacked run trains all members as one model,
the sequential run trains them one at a time, and the auto run does what `stack: auto`
decides for the device (fairbench.execution.stacking.should_stack). Prints members x steps per second
for the three (medians over --repeats, the three interleaved), their ratios, the machine and
its load.

    python bench/bench_stacked.py --members 8 --steps 20
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from fairbench.execution.stacking import should_stack
from fairbench.methods.families.latent.explanation import clip_perturbation, predicted_logit_focus
from fairbench.nets.stacked import StackedMLP
from fairbench.train.seeding import stream
from fairbench.train.stacked import fit_stacked

# Wall time by default; --clock cpu: this process's CPU time, close to an idle machine's wall
# time with --threads 1 on a loaded one (not with more threads: it counts OpenMP's spinning).
clock = time.perf_counter


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
    start = clock()
    fit_stacked(
        model,
        data["z"],
        data["y"],
        data["train"],
        data["val"],
        generators,
        epochs=1,
        batch_size=64,
        lr=1e-5,
        betas=(0.5, 0.9),
        perturb=perturb,
        max_steps_per_epoch=args.steps,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8, help="eta grid members")
    parser.add_argument("--steps", type=int, default=20, help="minibatch steps per member")
    parser.add_argument("--width", type=int, default=1000, help="hidden width (paper: 1000)")
    parser.add_argument("--rows", type=int, default=180000, help="latent codes (CelebA dvge train: 180000)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time | process CPU time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

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
    auto = should_stack("auto", args.device)
    runs = {
        "stacked": lambda: train(etas, data, args),
        "sequential": lambda: sum(train([eta], data, args) for eta in etas),
        "auto": lambda: runs["stacked" if auto else "sequential"](),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        names = list(runs)[repeat % 3 :] + list(runs)[: repeat % 3]  # rotate: load changes hit all alike
        for name in names:
            seconds[name].append(runs[name]())
    med = {name: statistics.median(values) for name, values in seconds.items()}
    work = args.members * args.steps
    print(
        f"device: {args.device}; machine: {machine(args.device)}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"grid: {args.members} members x {args.steps} steps, batch 64, MLP 10-{args.width}x5-2, {args.rows} codes, "
        f"median of {args.repeats}, {args.clock} clock"
    )
    for name, value in med.items():
        extra = f" -> {'stacked' if auto else 'sequential'} on {args.device}" if name == "auto" else ""
        spread = f"{min(seconds[name]):.1f}-{max(seconds[name]):.1f}"
        print(f"{name + ':':11} {work / value:8.1f} member-steps/s ({value:.1f} s, range {spread} s){extra}")
    print(f"ratio stacked/sequential: {med['sequential'] / med['stacked']:.2f}x")
    print(f"ratio auto/sequential:    {med['sequential'] / med['auto']:.2f}x")
    print(f"ratio auto/stacked:       {med['stacked'] / med['auto']:.2f}x")


if __name__ == "__main__":
    main()
