"""A tiny LFW folder in the official formats: lfw_attributes.txt (two '#' header lines,
tab-separated rows of person name, image number and 73 scores) and lfw/<Person>/<Person>_NNNN.jpg."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fairbench.data.lfw import ATTRIBUTES

try:  # importable both as a package module and from tests/ on sys.path
    from tests.image_fixtures import write_jpeg
except ImportError:  # pragma: no cover
    from image_fixtures import write_jpeg

PEOPLE = ("Aaron Eckhart", "Abdullah Gul", "Zoe Ball", "Ai Sugiyama", "Jean-Claude Juncker", "Li Peng")


def lfw_rows(n: int, seed: int = 0) -> list[tuple[str, int, np.ndarray]]:
    """(person, image number, 73 scores) per image; Male, Smiling, Wavy Hair, Youth alternate
    so that every split of a few dozen rows sees both values of each."""
    rng = np.random.default_rng(seed)
    rows, counts = [], dict.fromkeys(PEOPLE, 0)
    for i in range(n):
        person = PEOPLE[i % len(PEOPLE)]
        counts[person] += 1
        scores = rng.normal(size=len(ATTRIBUTES)).round(6)
        signs = {"Male": i % 2, "Smiling": (i // 2) % 2, "Wavy Hair": (i // 3) % 2, "Youth": i % 3 > 0}
        for name, sign in signs.items():
            column = ATTRIBUTES.index(name)
            scores[column] = (abs(scores[column]) + 0.1) * (1 if sign else -1)
        rows.append((person, counts[person], scores))
    return rows


def make_lfw(root: Path, n: int = 48, seed: int = 0, images: bool = True) -> Path:
    """Write `root/lfw/lfw_attributes.txt` and (with `images`) the image folder; return root/lfw."""
    folder = root / "lfw"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["# lfw attributes file, version 1.1", "\t".join(["#", "person", "imagenum", *ATTRIBUTES])]
    for person, number, scores in lfw_rows(n, seed):
        lines.append("\t".join([person, str(number), *(f"{v:.6f}" for v in scores)]))
        if images:
            name = person.replace(" ", "_")
            (folder / "lfw" / name).mkdir(parents=True, exist_ok=True)
            write_jpeg(folder / "lfw" / name / f"{name}_{number:04d}.jpg", rng, 250, 250)
    (folder / "lfw_attributes.txt").write_text("\n".join(lines) + "\n")
    return folder
