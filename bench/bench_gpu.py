"""Training throughput of the engine's settings, each against its baseline in the same run.

One command, one run; prints the machine, the settings and, per workload, the rate of every
precision (fp32 | tf32 | bf16) with its ratio to fp32:

- ResNet-18 training images/s at 32x32 and 64x64 (ERM's branched ResNet-18, batch 256),
- LfF's MLP (`mlp3`) epochs/s on Colored-MNIST-sized data (60,000 x 3 x 28 x 28, batch 256),
  one model alone and 10 seeds stacked (fairbench.train.fit_members; member-epochs/s),
- ResNet-18 training images/s at 32x32 summed over 5 jobs sharing the device, each its own process,
- REPAIR's minimax (batch 128) training rows/s on the same data, one alone and 5 seeds stacked,
- FAAP's deployed ResNet-18 and its G and D against it, training images/s at 32x32 and 224x224,
- DVGE's downstream g, member-steps/s, stacked (20 members) and one member alone,
- encoder iterations/s (vanilla VAE, FactorVAE, FFVAE, FD-VAE; batch 64, 64x64 images), per precision,
  one alone and 16 seeds stacked (fairbench.encoders.training.train_encoders; member-iterations/s),
- the quickstart's wall time with `--device auto` and `--device cpu` (`--quickstart`),
- the batched steps compiled (`--compile`: torch.compile, CUDA graphs on CUDA) against eager, for
  the mlp3 stack, DVGE's g stack and the FactorVAE encoder alone and stacked; both after one
  untimed run, so that neither rate includes compiling or first-call set-up.

`--parts` picks what to measure (default all but the last two, which are opt-in flags).
`--save-rates [FILE]` also writes the measured rates (per workload, in the units `Method.work`
declares, with the size of each measured stack) for `fairbench run --dry-run` to price jobs with
(default: where the dry run looks; see fairbench.execution.estimates), after every part, so a run
stopped by a time limit keeps what it measured.

Every training runs through the same code a job runs (fairbench.train.Trainer, the method's
own `update`), on made-up data of the workloads' shapes.

    python bench/bench_gpu.py                      # on the GPU when there is one
    python bench/bench_gpu.py --device cpu --small # a quick check of the script on a CPU
    python bench/bench_gpu.py --save-rates         # ... and keep the rates for dry-run estimates
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_stacked import machine  # this folder's scripts share it

from fairbench.artifacts import ArtifactCache
from fairbench.data.base import TaskData
from fairbench.deployed import Deployed, load_deployed, split_train
from fairbench.encoders import resolve_encoder
from fairbench.encoders.training import train_encoder, train_encoders
from fairbench.execution.estimates import Rates, default_rates_path
from fairbench.methods.base import RunContext
from fairbench.methods.erm import ERM
from fairbench.methods.faap import FAAP
from fairbench.methods.repair import MINIMAX_WORKLOAD, Repair
from fairbench.nets.stacked import StackedMLP
from fairbench.train import PRECISIONS, Arithmetic, Member, Trainer, fit_members
from fairbench.train.seeding import stream
from fairbench.train.stacked import fit_stacked

ROOT = Path(__file__).resolve().parent.parent


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(device: str, work: Callable[[], object], warm: bool = False) -> float:
    """Seconds `work` takes (after one untimed run when `warm`)."""
    if warm:
        work()
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def image_task(n: int, channels: int, side: int, classes: int, rng: np.random.Generator) -> TaskData:
    """A made-up image task of the given shape: uint8 images, a k-class target and bias label (a
    colour's), a binary group."""
    x = rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    y = rng.integers(0, classes, size=n)
    bias = rng.integers(0, classes, size=n)
    g = rng.integers(0, 2, size=n)
    cut = int(0.9 * n)
    return TaskData(
        dataset="bench",
        kind="image",
        protocol="random",
        target="y",
        sensitive="g",
        x=x,
        y=y,
        g=g,
        bias=bias,
        splits={"train": np.arange(cut), "val": np.arange(cut, n), "test": np.arange(cut, n)},
        feature_names=[],
        feature_sources=[],
        sensitive_columns=frozenset(),
        attributes=pd.DataFrame({"y": y, "g": g}),
        input_key="bench",
        n_classes=classes,
        protected={"g": g},
        group_counts={"g": 2},
    )


def context(device: str, precision: str, root: Path, compile: bool = False) -> RunContext:
    return RunContext(device, 0, ArtifactCache(root), logging.getLogger("bench"), root, precision, compile)


def erm_rate(task: TaskData, arch: str, device: str, precision: str, epochs: int, root: Path) -> float:
    """Training rows per second of ERM (the engine's loop, no validation scoring)."""
    method = ERM(ERM.resolve({"arch": arch, "epochs": epochs, "batch_size": 256, "select": "last"}, "paper"))
    t = Trainer(task, context(device, precision, root))
    model = method.build(t).to(device)
    optimizer = method.optimizer(model)
    method.adversaries = []

    def train() -> None:
        t.fit(model, lambda b: method.update(model, b, optimizer), epochs=epochs, batch_size=256, min_batch=2)

    seconds = timed(device, train)
    return epochs * len(task.splits["train"]) / seconds


def stacked_erm_rate(
    task: TaskData,
    arch: str,
    device: str,
    precision: str,
    epochs: int,
    members: int,
    root: Path,
    compile: bool = False,
    warm: bool = False,
) -> float:
    """Member training rows per second (summed over the members) of ERM with `members` seeds
    stacked (the engine's fit_members, as a stacked unit of a run trains; no validation scoring)."""
    params = ERM.resolve({"arch": arch, "epochs": epochs, "batch_size": 256, "select": "last"}, "paper")
    stack = []
    for seed in range(members):
        method = ERM(params)
        t = Trainer(task, replace(context(device, precision, root, compile), seed=seed))
        model = t.place(method.build(t))
        stack.append(Member(t, model, {}, lambda: None, lambda n, m=method, t=t: m.batches(t, n)))

    def train() -> None:
        fit_members(stack, method.stacked_loss, method.optimizer, epochs=epochs, min_batch=2)

    seconds = timed(device, train, warm)
    return members * epochs * len(task.splits["train"]) / seconds


def minimax_rate(task: TaskData, device: str, epochs: int, members: int, root: Path) -> float:
    """REPAIR's minimax training rows per second (summed over the members): one alone on the
    engine's loop, or `members` seeds as one batched model, as a job and a stacked unit train it."""
    params = Repair.resolve({"repair_epochs": epochs}, "paper")
    ctxs = [replace(context(device, "fp32", root), seed=seed) for seed in range(members)]
    methods = [Repair(params) for _ in ctxs]

    def train() -> None:
        if members == 1:
            methods[0].learn_weights(task, ctxs[0])
        else:
            Repair.learn_weights_stacked(methods, [task] * members, ctxs)

    # after one untimed run: the first steps' set-up would otherwise weigh on the short game
    return members * epochs * len(task.splits["train"]) / timed(device, train, warm=True)


def faap_rates(task: TaskData, device: str, precision: str, size: int, root: Path) -> tuple[float, float, float]:
    """Training rows/s, one epoch each at `size` x `size`, of the three workloads FAAP.work declares:
    a deployed model (kind normal, fairbench.deployed), FAAP's G and D against it, and each further
    attacked model (the time a second one adds to a row; inf where timing noise hides it)."""
    method = FAAP(FAAP.resolve({"size": size, "epochs": 1, "deployed_epochs": 1}, "paper"))
    ctx = context(device, precision, root)
    config = method.deployed_config("normal")
    deployed_rows, faap_rows = (len(rows) for rows in split_train(task.splits["train"], config.fraction, ctx.seed))
    deployed: list[Deployed] = []
    seconds = timed(device, lambda: deployed.append(load_deployed(task, config, ctx)))
    one, two = (timed(device, partial(method.train_generator, Trainer(task, ctx), deployed * n)) for n in (1, 2))
    further = faap_rows / (two - one) if two > one else math.inf
    return deployed_rows / seconds, faap_rows / one, further


def stacked_g_rate(
    device: str, members: int, steps: int, precision: str, compile: bool = False, warm: bool = False
) -> float:
    """DVGE downstream g member-steps/s (10-1000x5-2 MLPs, batch 64) stacked `members` deep."""
    rows = 20_000
    z = torch.randn(rows, 10, generator=torch.Generator().manual_seed(0)).to(device)
    y = (z[:, 0] > 0).long()
    model = StackedMLP([10, *[1000] * 5, 2], members, device=device)
    generators = [stream(0, "downstream", m) for m in range(members)]
    model.reset(generators)
    train, val = torch.arange(rows - 256, device=device), torch.arange(rows - 256, rows, device=device)

    def fit() -> None:
        fit_stacked(
            model,
            z,
            y,
            train,
            val,
            generators,
            epochs=1,
            batch_size=64,
            lr=1e-5,
            betas=(0.5, 0.9),
            max_steps_per_epoch=steps,
            arithmetic=Arithmetic(precision, device, compile),
        )

    return members * steps / timed(device, fit, warm)


def encoder_rate(
    name: str, task: TaskData, device: str, iterations: int, precision: str, compile: bool = False, warm: bool = False
) -> float:
    """Encoder training iterations per second (batch 64), the artifact's own loop."""
    config = resolve_encoder({"name": name})

    def train() -> None:
        train_encoder(task, config, iterations, 0, device, lambda message: None, precision, compile)

    return iterations / timed(device, train, warm)


def stacked_encoder_rate(
    name: str,
    task: TaskData,
    device: str,
    iterations: int,
    precision: str,
    members: int,
    compile: bool = False,
    warm: bool = False,
) -> float:
    """Member-iterations per second of `members` encoders (seeds 0..M-1) trained as one stacked
    model (fairbench.encoders.training.train_encoders), as a stacked unit of jobs trains them."""
    config = resolve_encoder({"name": name})

    def train() -> None:
        seeds = list(range(members))
        quiet = lambda line: None  # noqa: E731
        train_encoders([task] * members, [config] * members, iterations, seeds, device, quiet, precision, compile)

    return members * iterations / timed(device, train, warm)


def shared_resnet_rate(device: str, precision: str, jobs: int, n: int, side: int) -> float:
    """Training images/s of `jobs` ResNet-18 ERM jobs sharing the device, each in its own process
    with one torch thread (as `fairbench run --jobs-per-device` runs them): every job's images over
    the wall time from the common start to the last job's end."""
    spawn = multiprocessing.get_context("spawn")
    barrier, spans = spawn.Barrier(jobs), spawn.Queue()
    processes = [
        spawn.Process(target=_shared_job, args=(device, precision, n, side, seed, barrier, spans))
        for seed in range(jobs)
    ]
    for process in processes:
        process.start()
    try:
        starts, ends = zip(*(spans.get(timeout=900) for _ in processes), strict=True)
    except queue.Empty:
        raise RuntimeError("a job sharing the device stopped without a result (its error is above)") from None
    finally:
        for process in processes:
            process.join(timeout=60)
    return jobs * int(0.9 * n) / (max(ends) - min(starts))


def _shared_job(
    device: str, precision: str, n: int, side: int, seed: int, barrier: Any, spans: multiprocessing.Queue
) -> None:
    torch.set_num_threads(1)
    task = image_task(n, 3, side, 10, np.random.default_rng(seed))
    torch.zeros(1, device=device)  # the device's context before the common start
    barrier.wait()
    start = time.time()
    with tempfile.TemporaryDirectory() as folder:
        erm_rate(task, "resnet18", device, precision, 1, Path(folder))
    spans.put((start, time.time()))


def quickstart_seconds(device: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "FAIRBENCH_CACHE": f"{folder}/cache"}
        command = [
            sys.executable,
            "-m",
            "fairbench",
            "run",
            str(ROOT / "suites" / "quickstart.yaml"),
            "--results",
            f"{folder}/out",
            "--device",
            device,
        ]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


PARTS = ("train", "shared", "minimax", "faap", "g", "encoders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny sizes: checks the script, measures little")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated; fp32 is the baseline")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated, of {', '.join(PARTS)} (training rows/s of ResNet-18, mlp3 and DVGE's conv net; "
        "ResNet-18 jobs sharing the device; REPAIR's minimax; FAAP's deployed model and G; DVGE's g; "
        "the VAE encoders)",
    )
    parser.add_argument("--shared-jobs", type=int, default=5, help="ResNet-18 jobs sharing the device (part shared)")
    parser.add_argument("--quickstart", action="store_true", help="also time the quickstart with auto and cpu")
    parser.add_argument("--encoder-members", type=int, default=16, help="encoders in a stack (FFVAE's grid: 16)")
    parser.add_argument("--compile", action="store_true", help="also time the batched steps compiled vs eager")
    parser.add_argument(
        "--save-rates",
        nargs="?",
        const=default_rates_path(),
        type=Path,
        metavar="FILE",
        help=f"write the rates for dry-run estimates (default {default_rates_path()}), after every part measured",
    )
    args = parser.parse_args()
    parts = [part for part in args.parts.split(",") if part]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; use some of {', '.join(PARTS)}")
    precisions = ["fp32", *[p for p in args.precisions.split(",") if p != "fp32"]]
    rng = np.random.default_rng(0)
    small = args.small
    described = machine(args.device)
    print(f"device {args.device}: {described}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    # workload (as Method.work names it) -> units per second; a precision other than fp32 suffixed
    rates: dict[str, float] = {}
    # workload -> the members of the stack its "<workload> stacked" rates were measured with
    stacks: dict[str, int] = {}

    def keep() -> None:
        """Save the rates measured so far: a run cut short (a lent machine's time limit) keeps them."""
        if args.save_rates and rates:
            name = described + (" (--small)" if small else "")
            Rates(name, args.device.split(":")[0], rates, stacks).save(args.save_rates)

    def suffixed(name: str, precision: str) -> str:
        return name if precision == "fp32" else f"{name} {precision}"

    cmnist = image_task(1024 if small else 60_000, 3, 28, 10, rng)
    faces = image_task(256 if small else 4096, 3, 64, 2, rng)
    epochs, steps, iterations = (1, 5, 5) if small else (3, 100, 300)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if "train" in parts:
            workloads: dict[str, tuple[str, Callable[[str], float]]] = {}
            for side in (32, 64):
                task = image_task(512 if small else 25_000, 3, side, 10, rng)
                workloads[f"train:resnet18@3x{side}x{side}"] = (
                    f"resnet18 {side}x{side} images/s",
                    lambda p, task=task: erm_rate(task, "resnet18", args.device, p, 1, root),
                )
            workloads["train:mlp3@3x28x28"] = (
                "mlp3 Colored MNIST images/s",
                lambda p: erm_rate(cmnist, "mlp3", args.device, p, epochs, root),
            )
            workloads["train:dvge@3x64x64"] = (
                "DVGE Table 3 conv net 64x64 images/s",
                lambda p: erm_rate(faces, "dvge", args.device, p, 1, root),
            )
            for workload, (label, rate) in workloads.items():
                base = None
                for precision in precisions:
                    rate_now = rates[suffixed(workload, precision)] = rate(precision)
                    base = base or rate_now
                    print(f"{label:36} {precision:5} {rate_now:12.1f}  x{rate_now / base:.2f} vs fp32")
                keep()
            per_epoch = rates["train:mlp3@3x28x28"] / len(cmnist.splits["train"])
            print(f"{'mlp3 Colored MNIST epochs/s':36} fp32  {per_epoch:12.2f}")
            members = stacks["train:mlp3@3x28x28"] = 10
            for precision in precisions:
                rate = stacked_erm_rate(cmnist, "mlp3", args.device, precision, epochs, members, root)
                rates[suffixed("train:mlp3@3x28x28 stacked", precision)] = rate
                alone = rates[suffixed("train:mlp3@3x28x28", precision)]
                label = f"mlp3 member-epochs/s, {members} stacked"
                per_epoch = rate / len(cmnist.splits["train"])
                print(f"{label:36} {precision:5} {per_epoch:12.2f}  x{rate / alone:.2f} vs one alone")
            keep()
        if "shared" in parts:
            # the target is summed over the jobs that share the GPU (fp32, 32x32)
            jobs, n = args.shared_jobs, 512 if small else 25_000
            rate = shared_resnet_rate(args.device, "fp32", jobs, n, 32)
            alone = rates.get("train:resnet18@3x32x32")
            versus = f"  x{rate / alone:.2f} vs one job alone" if alone else ""
            print(f"{f'resnet18 32x32 images/s, {jobs} jobs':36} fp32  {rate:12.1f}{versus}")
        if "minimax" in parts:
            # REPAIR's minimax, fp32 only: a linear model on one-hot rows; its rate prices every precision
            members = stacks[MINIMAX_WORKLOAD] = 5
            rates[MINIMAX_WORKLOAD] = alone = minimax_rate(cmnist, args.device, epochs, 1, root)
            rates[f"{MINIMAX_WORKLOAD} stacked"] = rate = minimax_rate(cmnist, args.device, epochs, members, root)
            print(f"{'repair minimax rows/s':36} fp32  {alone:12.1f}")
            label = f"repair minimax rows/s, {members} stacked"
            print(f"{label:36} fp32  {rate:12.1f}  x{rate / alone:.2f} vs one alone")
            keep()
        if "faap" in parts:
            portraits = image_task(64 if small else 4096, 3, 64, 2, rng)
            faap_rates(portraits, args.device, "fp32", 32, root / "untimed")  # first calls' set-up, untimed
            for size in (32, 224):  # FAAP's Colored MNIST check and its paper size
                base = None
                for precision in precisions:
                    measured = faap_rates(portraits, args.device, precision, size, root)
                    base = base or measured
                    for label, workload, rate, first in zip(
                        ("deployed", "faap G+D", "faap +attacked"),
                        ("deployed", "faap", "faap+attacked"),
                        measured,
                        base,
                    ):
                        text = f"{label} {size}x{size} images/s"
                        if math.isinf(rate):
                            print(f"{text:36} {precision:5} {'not measured: the second model added no time':>12}")
                            continue
                        rates[suffixed(f"{workload}@3x{size}x{size}", precision)] = rate
                        versus = f"  x{rate / first:.2f} vs fp32" if math.isfinite(first) else ""
                        print(f"{text:36} {precision:5} {rate:12.1f}{versus}")
                keep()
        if "g" in parts:
            stacks["latent_mlp:1000"] = 20
            for members in (1, 20):
                base = None
                for precision in precisions:
                    rate = stacked_g_rate(args.device, members, steps, precision)
                    base = base or rate
                    rates[suffixed("latent_mlp:1000" + (" stacked" if members > 1 else ""), precision)] = rate
                    label = f"dvge g member-steps/s, {members} member(s)"
                    print(f"{label:36} {precision:5} {rate:12.1f}  x{rate / base:.2f} vs fp32")
            keep()
        if "encoders" in parts:
            for name in ("vanilla_vae", "factor_vae", "ffvae", "fdvae"):
                workload = f"encoder:{name}@3x64x64"
                base = None
                for precision in precisions:
                    rate = rates[suffixed(workload, precision)] = encoder_rate(
                        name, faces, args.device, iterations, precision
                    )
                    base = base or rate
                    print(f"{name + ' iterations/s':36} {precision:5} {rate:12.1f}  x{rate / base:.2f} vs fp32")
                keep()
                members = stacks[workload] = args.encoder_members
                for precision in precisions:
                    rate = stacked_encoder_rate(name, faces, args.device, iterations, precision, members)
                    rates[suffixed(f"{workload} stacked", precision)] = rate
                    alone = rates[suffixed(workload, precision)]
                    label = f"{name} member-it/s, {members} stacked"
                    print(f"{label:36} {precision:5} {rate:12.1f}  x{rate / alone:.2f} vs one alone")
                keep()
        if args.compile:
            compared: dict[str, Callable[[bool], float]] = {
                "mlp3 member-epochs/s, 10 stacked": lambda c: (
                    stacked_erm_rate(cmnist, "mlp3", args.device, "fp32", 1, 10, root, c, warm=True)
                    / len(cmnist.splits["train"])
                ),
                "dvge g member-steps/s, 20 stacked": lambda c: stacked_g_rate(
                    args.device, 20, steps, "fp32", c, warm=True
                ),
                "factor_vae iterations/s": lambda c: encoder_rate(
                    "factor_vae", faces, args.device, iterations, "fp32", c, warm=True
                ),
                f"factor_vae member-it/s, {args.encoder_members} stacked": lambda c: stacked_encoder_rate(
                    "factor_vae", faces, args.device, iterations, "fp32", args.encoder_members, c, warm=True
                ),
            }
            for label, measure in compared.items():
                eager, compiled = measure(False), measure(True)
                print(f"{label:36} fp32  {compiled:12.1f}  x{compiled / eager:.2f} compiled vs eager ({eager:.1f})")
    if args.quickstart:
        auto, cpu = quickstart_seconds("auto"), quickstart_seconds("cpu")
        print(f"quickstart wall: --device auto {auto:.1f} s, --device cpu {cpu:.1f} s (auto/cpu x{auto / cpu:.2f})")
    if args.save_rates and rates:
        print(f"rates of {len(rates)} workloads saved to {args.save_rates}")


if __name__ == "__main__":
    main()
