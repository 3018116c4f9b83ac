"""Throughput of the CelebA preprocessing cache: JPEG 178x218 -> uint8 64x64, images/second.

Generates N photo-like JPEGs (smooth colour fields plus grain, about the size of CelebA's files)
in a temp dir, then builds the cache with 1 and 2 worker processes (draft decode, the default)
and once with a full decode, and prints the ratios measured in this run with the machine info.

    python bench/bench_celeba_preprocess.py --n 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fairbench.data.images import ImageCache, Preprocess, build_cache, default_workers


def machine() -> str:
    import PIL
    from PIL import features

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} logical CPUs, {default_workers()} usable | "
        f"Python {platform.python_version()} | Pillow {PIL.__version__} "
        f"(libjpeg-turbo {features.version_feature('libjpeg_turbo') or 'no'})"
    )


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, size=(7, 6, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((178, 218), Image.Resampling.BICUBIC)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, size=(218, 178, 3)).astype(np.int16)
        path = folder / f"{i + 1:06d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def run(paths: list[Path], folder: Path, prep: Preprocess, workers: int) -> float:
    cache = ImageCache(folder, f"bench_{prep.key()}_{workers}")
    started = time.perf_counter()
    failed = build_cache(cache, paths, prep, "bench", workers=workers, progress=False)
    seconds = time.perf_counter() - started
    assert not failed
    cache.array_path.unlink()
    cache.manifest_path.unlink()
    return len(paths) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of JPEGs to generate")
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting (best is reported)")
    args = parser.parse_args()
    print(machine())
    print("device: cpu (decoding and resizing run on the CPU only)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        paths = make_images(folder, args.n)
        size = np.mean([p.stat().st_size for p in paths]) / 1024
        print(f"generated {args.n} JPEGs 178x218 (mean {size:.1f} KiB) in {time.perf_counter() - started:.1f} s")
        results = {}
        for label, prep, workers in (
            ("draft, 1 worker", Preprocess(64, 0, True), 1),
            ("draft, 2 workers", Preprocess(64, 0, True), 2),
            ("full decode, 1 worker", Preprocess(64, 0, False), 1),
        ):
            results[label] = max(run(paths, folder, prep, workers) for _ in range(args.repeat))
            print(f"{label:<24} {results[label]:8.0f} images/s")
        base = results["draft, 1 worker"]
        print(
            f"2 workers / 1 worker: {results['draft, 2 workers'] / base:.2f}x; "
            f"draft / full decode: {base / results['full decode, 1 worker']:.2f}x"
        )
        print(
            f"estimated full CelebA (202599 images) with 2 workers: {202599 / results['draft, 2 workers'] / 60:.1f} min"
        )


if __name__ == "__main__":
    main()
