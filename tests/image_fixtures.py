"""Tiny image datasets written in the exact official file formats, for tests.

- `make_celeba`: img_align_celeba/NNNNNN.jpg (178x218 JPEG), list_attr_celeba.txt (count line,
  names line ending in a space, rows of -1/1 in runs of spaces, CRLF line ends) and
  list_eval_partition.txt (CRLF), with image numbers taken from all three official ranges.
- `make_mnist`: gzip-compressed IDX files (train-*/t10k-*).
- `make_cifar10`: cifar-10-batches-py/ pickles (data_batch_1..5, test_batch, batches.meta).
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
# 20 official-train images, 8 official-val ones inside DVGE's train range, 2 official-val ones
# in DVGE's test range (180001..), 10 official-test ones.
CELEBA_IDS = (
    *range(1, 21),
    *range(162771, 162779),
    180001,
    180002,
    *range(182638, 182648),
)


def celeba_partition(image_id: int) -> int:
    """The official partition of an image number."""
    return 0 if image_id <= 162770 else (1 if image_id <= 182637 else 2)


def _face(rng: np.random.Generator, height: int = 218, width: int = 178) -> np.ndarray:
    """A smooth random RGB image (compresses like a photo, not like noise)."""
    small = rng.integers(0, 256, size=(6, 5, 3)).astype(np.float64)
    rows = np.linspace(0, 5, height)
    cols = np.linspace(0, 4, width)
    r0, c0 = np.floor(rows).astype(int).clip(0, 4), np.floor(cols).astype(int).clip(0, 3)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = small[r0][:, c0] * (1 - fc) + small[r0][:, c0 + 1] * fc
    bottom = small[r0 + 1][:, c0] * (1 - fc) + small[r0 + 1][:, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.uint8)


def write_jpeg(path: Path, rng: np.random.Generator, height: int = 218, width: int = 178) -> None:
    from PIL import Image

    Image.fromarray(_face(rng, height, width)).save(path, "JPEG", quality=90)


def celeba_attributes(ids: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """-1/1 values (len(ids), 40): every split has both values of Male, Young, Attractive."""
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], size=(len(ids), 40))
    pattern = np.array([[1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])  # Male, Young, Attractive
    for row in range(len(ids)):
        values[row, [20, 39, 2]] = pattern[row % 4]
    return values


def make_celeba(
    root: Path, ids: tuple[int, ...] = CELEBA_IDS, seed: int = 0, jpeg_size: tuple[int, int] = (218, 178)
) -> Path:
    """Write a CelebA folder at `root/celeba` (or `root` if it is named celeba); return it."""
    folder = root if root.name == "celeba" else root / "celeba"
    images = folder / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for image_id in ids:
        write_jpeg(images / f"{image_id:06d}.jpg", rng, *jpeg_size)
    values = celeba_attributes(ids, seed)
    lines = [f"{len(ids)}", " ".join(CELEBA_ATTRIBUTES) + " "]
    for image_id, row in zip(ids, values, strict=True):
        lines.append(f"{image_id:06d}.jpg " + " ".join(f"{v:2d}" for v in row))
    (folder / "list_attr_celeba.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    partition = [f"{image_id:06d}.jpg {celeba_partition(image_id)}" for image_id in ids]
    (folder / "list_eval_partition.txt").write_bytes(("\r\n".join(partition) + "\r\n").encode())
    return folder


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file (magic 0x0000 08 ndim, big-endian dims)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def digit_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 28, 28) uint8 grey strokes, brighter in the middle, one pattern per digit."""
    rng = np.random.default_rng(seed)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 4:24, 8 + label : 12 + label] = 255
        images[i, 10 + label % 5, 6:22] = rng.integers(128, 256)
    return images


def make_mnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Write the four MNIST IDX files at `root/mnist`; labels cycle 0..9 in a shuffled order."""
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", digit_images(labels, seed))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar10(root: Path, per_batch: int = 40, n_test: int = 50, seed: int = 0) -> Path:
    """Write cifar-10-batches-py/ at `root/cifar10` with `per_batch` images per training batch."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        labels = [int(v) for v in np.arange(n) % 10]
        batch = {
            b"batch_label": f"{name} of fixture".encode(),
            b"labels": labels,
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [c.encode() for c in CIFAR_CLASSES],
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return folder.parent


def make_cinic_imagenet(folder: Path, train: int = 20, test: int = 4, seed: int = 0) -> Path:
    """Write CINIC-10-style class folders `folder/{train,test}/<class>/` of 32x32 RGB PNGs: `train`
    (or `test`) ImageNet-named images per class (n<wnid>_<i>.png) and two CIFAR copies
    (cifar10-<split>-<i>.png) that a loader must skip."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for label, name in enumerate(CIFAR_CLASSES):
            target = folder / split / name
            target.mkdir(parents=True, exist_ok=True)
            names = [f"n0{label}000000_{i}.png" for i in range(n)]
            names += [f"cifar10-{split}-{label}{i}.png" for i in range(2)]
            for file in names:
                Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(target / file)
    return folder
