"""Shared image preprocessing: decode JPEGs once, in parallel, into a verified uint8 cache.

A cache is two files: `<stem>.u8`, the raw (N, C, H, W) uint8 array, and `<stem>.json`, its
manifest (source list hash, shape, byte size, `done: true`). The manifest is written last, after
the array is complete and renamed into place, so a missing, stale or truncated cache is detected
and rebuilt; it is never used silently. Builds are serialised by a lock file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from fairbench.errors import FairbenchError

CACHE_VERSION = 1
_CHUNK = 64


@dataclass(frozen=True)
class Preprocess:
    """How one image becomes a (3, size, size) uint8 array.

    `crop`: side of a centre square cut from the original before resizing (0 = none, the whole
    image is resized, as the DVGE code does). `draft`: let libjpeg decode at a reduced DCT
    scale (1/2, 1/4, 1/8) that keeps the used region at least the output size (much faster;
    pixels differ from a full decode by a few grey levels).
    """

    size: int = 64
    crop: int = 0
    draft: bool = True

    def key(self) -> str:
        return f"{self.size}px" + (f"_crop{self.crop}" if self.crop else "") + ("_draft" if self.draft else "")


def load_image(path: str | Path, prep: Preprocess) -> np.ndarray:
    """Decode and resize one image to (3, size, size) uint8; raises OSError/ValueError if unreadable."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        box = None
        if prep.crop:
            side = min(prep.crop, width, height)
            left, top = (width - side) // 2, (height - side) // 2
            box = (left, top, left + side, top + side)
        if prep.draft and image.format == "JPEG":
            # draft keeps the decoded image at least this large; box coordinates scale with it
            scale = min(width, height) / (min(prep.crop, width, height) if prep.crop else min(width, height))
            want = int(np.ceil(prep.size * scale))
            image.draft("RGB", (want, want))
            if box is not None:
                fx, fy = image.size[0] / width, image.size[1] / height
                box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
        image = image.convert("RGB")
        resized = image.resize((prep.size, prep.size), Image.Resampling.BILINEAR, box=box)
        return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def source_hash(names: Sequence[str], sizes: Sequence[int], prep: Preprocess) -> str:
    """Hash of everything a cache depends on: file names, their byte sizes, preprocessing."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{prep.key()}|".encode())
    for name, size in zip(names, sizes, strict=True):
        digest.update(f"{name}:{size}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageCache:
    """A cache location: `<folder>/<stem>.u8` plus its manifest `<stem>.json`."""

    folder: Path
    stem: str

    @property
    def array_path(self) -> Path:
        return self.folder / f"{self.stem}.u8"

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.stem}.json"

    def problem(self, expected_hash: str, count: int, shape: tuple[int, int, int]) -> str | None:
        """Why the cache cannot be used (None if it is complete and current)."""
        if not self.manifest_path.exists():
            return "no finished cache" if not self.array_path.exists() else "unfinished cache"
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return "unreadable manifest"
        want = {
            "version": CACHE_VERSION,
            "source_hash": expected_hash,
            "count": count,
            "shape": [count, *shape],
            "done": True,
        }
        for key, value in want.items():
            if manifest.get(key) != value:
                return f"stale cache ({key} differs)"
        nbytes = count * int(np.prod(shape))
        if not self.array_path.exists() or self.array_path.stat().st_size != nbytes:
            return "truncated cache"
        return None

    def open(self, count: int, shape: tuple[int, int, int]) -> np.ndarray:
        return np.memmap(self.array_path, dtype=np.uint8, mode="r", shape=(count, *shape))


# Worker state: set once per process by the pool initializer.
_worker: dict = {}


def _init_worker(part: str, count: int, shape: tuple[int, int, int], prep: Preprocess) -> None:
    _worker["out"] = np.memmap(part, dtype=np.uint8, mode="r+", shape=(count, *shape))
    _worker["prep"] = prep


def _work(task: tuple[int, list[str]]) -> tuple[int, list[tuple[str, str]]]:
    start, paths = task
    out, prep = _worker["out"], _worker["prep"]
    failed = []
    for offset, path in enumerate(paths):
        try:
            out[start + offset] = load_image(path, prep)
        except Exception as error:  # noqa: BLE001 - any decoder failure means an unreadable image
            failed.append((path, f"{type(error).__name__}: {error}"))
    out.flush()
    return len(paths), failed


def _progress(total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=True,
    )


def default_workers() -> int:
    """Worker processes for decoding: $FAIRBENCH_DECODE_WORKERS, else the cores this process may use."""
    if os.environ.get("FAIRBENCH_DECODE_WORKERS", "").strip():
        return max(1, int(os.environ["FAIRBENCH_DECODE_WORKERS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def build_cache(
    cache: ImageCache,
    paths: Sequence[str | Path],
    prep: Preprocess,
    expected_hash: str,
    workers: int | None = None,
    label: str = "decoding images",
    progress: bool = True,
) -> list[tuple[str, str]]:
    """Decode `paths` into `cache` with a process pool; return the unreadable (path, reason) pairs.

    On any failure the partial array is removed and no manifest is written.
    """
    import time

    shape = (3, prep.size, prep.size)
    count = len(paths)
    cache.folder.mkdir(parents=True, exist_ok=True)
    part = cache.array_path.with_name(cache.array_path.name + ".part")
    cache.manifest_path.unlink(missing_ok=True)
    np.memmap(part, dtype=np.uint8, mode="w+", shape=(max(count, 1), *shape)).flush()
    if count == 0:
        os.truncate(part, 0)
    workers = max(1, min(workers or default_workers(), count or 1))
    if multiprocessing.current_process().daemon:  # daemonic processes cannot have children
        workers = 1
    chunk = max(1, min(_CHUNK, -(-count // (4 * workers))))  # several chunks per worker
    tasks = [(i, [str(p) for p in paths[i : i + chunk]]) for i in range(0, count, chunk)]
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()

    def run(on_done: Callable[[int], None]) -> None:
        if workers == 1:
            _init_worker(str(part), count, shape, prep)
            try:
                for task in tasks:
                    done, bad = _work(task)
                    failed.extend(bad)
                    on_done(done)
            finally:
                _worker.clear()
            return
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with context.Pool(workers, _init_worker, (str(part), count, shape, prep)) as pool:
            for done, bad in pool.imap_unordered(_work, tasks):
                failed.extend(bad)
                on_done(done)

    if progress and count:
        with _progress(count, label) as bar:
            task_id = bar.add_task(label, total=count, rate="")

            def advance(done: int) -> None:
                elapsed = time.perf_counter() - started
                completed = bar.tasks[0].completed + done
                bar.update(task_id, advance=done, rate=f"{completed / max(elapsed, 1e-9):.0f} img/s")

            run(advance)
    else:
        run(lambda done: None)
    if failed:
        part.unlink(missing_ok=True)
        return sorted(failed)
    part.replace(cache.array_path)
    manifest = {
        "version": CACHE_VERSION,
        "source_hash": expected_hash,
        "count": count,
        "shape": [count, *shape],
        "preprocess": prep.key(),
        "bytes": count * int(np.prod(shape)),
        "seconds": round(time.perf_counter() - started, 2),
        "done": True,
    }
    tmp = cache.manifest_path.with_name(cache.manifest_path.name + ".part")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(cache.manifest_path)
    return []


def cached_images(
    cache: ImageCache,
    paths: Sequence[str | Path],
    prep: Preprocess,
    expected_hash: str,
    dataset: str,
    workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The (N, 3, size, size) uint8 memmap of `paths`, building or rebuilding the cache if needed.

    Unreadable images stop with one line naming how many and which.
    """
    shape = (3, prep.size, prep.size)
    if cache.problem(expected_hash, len(paths), shape) is None:
        return cache.open(len(paths), shape)
    cache.folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache.folder / f"{cache.stem}.lock")):
        if cache.problem(expected_hash, len(paths), shape) is not None:
            failed = build_cache(cache, paths, prep, expected_hash, workers, f"{dataset}: {prep.key()}", progress)
            if failed:
                names = ", ".join(f"{Path(p).name} ({why.splitlines()[0][:60]})" for p, why in failed[:3])
                raise FairbenchError(
                    f"{dataset}: {len(failed)} of {len(paths)} images could not be decoded, e.g. {names}; "
                    f"replace them from the original archive and run again"
                )
    return cache.open(len(paths), shape)


def to_grey_rgb(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) uint8 RGB to grey, kept as 3 equal channels (PIL 'L': ITU-R 601-2 luma)."""
    r, g, b = (images[:, c].astype(np.uint32) for c in range(3))
    luma = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
    return np.repeat(luma[:, None], 3, axis=1)
