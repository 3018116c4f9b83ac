"""Generated 64x64 RGB images with binary CelebA-named attributes; needs no download.

For testing the image path (conv VAEs, DVGE on images) without CelebA: every attribute is
drawn into the picture, so an encoder can recover it, and the label is biased by the group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairbench.bounds import NON_NEGATIVE, at_least, between
from fairbench.data.base import Dataset, Inputs, Option
from fairbench.data.splits import stratified_split

ATTRIBUTES = ("Male", "Young", "Attractive", "Oval_Face")


class SyntheticImages(Dataset):
    """Attributes Male, Young, Attractive, Oval_Face (0/1); images (N, 3, 64, 64) uint8.

    Male tints the background (blue vs red), Young draws a top stripe, Attractive a centred
    square, Oval_Face an ellipse instead of it; per-pixel noise on top. P(Attractive = 1) is
    0.5 + bias/2 for non-male rows and 0.5 - bias/2 for male rows.
    """

    name = "synthetic_images"
    description = "generated 64x64 images with CelebA-named binary attributes (no download)"
    kind = "image"
    protocols = ("random",)
    label = "Attractive"
    options = {
        "n": Option(1200, "number of images", at_least(10)),
        "bias": Option(0.4, "difference of P(Attractive) between the Male groups (0 = none)", between(-1, 1)),
        "noise": Option(24.0, "standard deviation of the per-pixel noise (0-255 scale)", NON_NEGATIVE),
    }
    split_fractions = {"train": 0.6, "val": 0.2, "test": 0.2}

    def ensure_files(self, allow_download: bool = True) -> None:
        return None

    def column_names(self) -> list[str]:
        return list(ATTRIBUTES)

    def read_frame(self, seed: int) -> pd.DataFrame:
        n = int(self.settings["n"])
        rng = np.random.default_rng(seed)
        male = rng.integers(0, 2, n)
        young = (rng.random(n) < 0.6).astype(int)
        attractive = (rng.random(n) < 0.5 + self.settings["bias"] * (0.5 - male)).astype(int)
        oval = (rng.random(n) < 0.3).astype(int)
        frame = pd.DataFrame({"Male": male, "Young": young, "Attractive": attractive, "Oval_Face": oval})
        # Images are drawn from the frame in `inputs`; this seeds their noise.
        frame.attrs["seed"] = seed
        return frame

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        return stratified_split(frame[self.label].to_numpy(), self.split_fractions, seed)

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """The image of every row (attributes are never inputs, so `exclude` changes nothing)."""
        n = len(frame)
        rng = np.random.default_rng([int(frame.attrs.get("seed", 0)), 1])
        yy, xx = np.mgrid[0:64, 0:64]
        square = (np.abs(yy - 36) < 12) & (np.abs(xx - 32) < 12)
        ellipse = ((yy - 36) / 16.0) ** 2 + ((xx - 32) / 10.0) ** 2 < 1
        stripe = yy < 10
        images = np.empty((n, 3, 64, 64), dtype=np.float32)
        male = frame["Male"].to_numpy()[:, None, None]
        images[:, 0] = np.where(male, 60.0, 180.0)
        images[:, 1] = 90.0
        images[:, 2] = np.where(male, 180.0, 60.0)
        images[:, 1] += np.where(frame["Young"].to_numpy()[:, None, None] & stripe, 140.0, 0.0)
        shape = np.where(frame["Oval_Face"].to_numpy()[:, None, None], ellipse, square)
        strength = np.where(frame["Attractive"].to_numpy(), 70.0, 25.0)[:, None, None]
        images += (shape * strength)[:, None]
        images += rng.normal(scale=self.settings["noise"], size=images.shape).astype(np.float32)
        x = np.clip(np.round(images), 0, 255).astype(np.uint8)
        return Inputs(x=x, feature_names=["pixels"], feature_sources=["image"])
