"""The datasets of GBA's tables (Colored MNIST, CIFAR-10S, CIFAR-I, CelebA with LfF's protocol):
bias and aligned columns against hand counts, on fixtures in the official file formats."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from image_fixtures import (
    CIFAR_CLASSES,
    make_celeba,
    make_cifar10,
    make_cinic_imagenet,
    make_mnist,
)

from fairbench.data import catalog, celeba
from fairbench.data.base import build_task, open_dataset
from fairbench.errors import FairbenchError

GREY_CLASSES = ("airplane", "bird", "deer", "frog", "ship")


@pytest.mark.parametrize("skew", [0.05, 0.02])
def test_colored_mnist_aligned_and_bias_by_hand(tmp_path: Path, skew: float) -> None:
    """GBA Table 4's skews: 95% (skew 0.05) and 98% (0.02) of each digit wear its own colour."""
    make_mnist(tmp_path, n_train=1000, n_test=200)
    frame = open_dataset("colored_mnist", tmp_path, {"skew": skew}).frame(0)
    np.testing.assert_array_equal(frame.bias, frame.color)
    np.testing.assert_array_equal(frame.aligned, (frame.color == frame.digit).astype(int))
    train = frame[frame.is_test == 0]
    for digit in range(10):
        rows = train[train.digit == digit]
        assert (rows.color == digit).sum() == round((1 - skew) * len(rows)) == 100 - round(100 * skew)
        # the aligned colour is the most frequent colour of its digit (INTERFACE's definition)
        assert rows.color.value_counts().idxmax() == digit
    test = frame[frame.is_test == 1]
    assert test.aligned.sum() == 20  # test_aligned 0.1 of 20 images per digit, 2 each


def test_cifar10s_aligned_and_bias_by_hand(tmp_path: Path) -> None:
    make_cifar10(tmp_path, per_batch=40, n_test=50)
    frame = open_dataset("cifar10s", tmp_path).frame(0)
    np.testing.assert_array_equal(frame.bias, frame.grey)
    train = frame[frame.is_test == 0]
    for label, name in enumerate(CIFAR_CLASSES):
        rows = train[train.label == label]
        grey_major = int(name in GREY_CLASSES)
        assert (rows.class_name == name).all() and (rows.grey_major == grey_major).all()
        assert (rows.grey == grey_major).sum() == 19 and len(rows) == 20  # 95/5 of 20
        assert (rows.aligned == 1).sum() == 19
        np.testing.assert_array_equal(rows.aligned, (rows.grey == grey_major).astype(int))
    test = frame[frame.is_test == 1]
    # every test image once in colour, once grey: half of them aligned
    assert len(test) == 100 and test.aligned.sum() == 50
    # `target: label` is the 10-class task of GBA Table 1; bias and aligned come from the frame
    task = build_task(open_dataset("cifar10s", tmp_path), None, "label", "grey", 0)
    assert task.n_classes == 10 and np.array_equal(task.y, frame.label)
    assert np.array_equal(task.bias, frame.grey) and np.array_equal(task.aligned, frame.aligned == 1)


def test_celeba_lff_protocol(tmp_path: Path) -> None:
    """LfF trains on the official train partition and tests on the official validation one."""
    make_celeba(tmp_path)
    dataset = open_dataset("celeba", tmp_path)
    frame = dataset.frame(0)
    splits = dataset.split(frame, "lff", 0)
    ids = frame.image_id.to_numpy()
    np.testing.assert_array_equal(ids[splits["test"]], [*range(162771, 162779), 180001, 180002])
    train_range = ids[np.r_[splits["train"], splits["val"]]]
    assert sorted(train_range) == list(range(1, 21)) and len(splits["val"]) == 2
    assert not np.intersect1d(splits["train"], splits["val"]).size
    assert dataset.split(frame, "lff", 1)["val"].tolist() != splits["val"].tolist()
    # the dvge protocol is unchanged: train range 1..180000, the rest test
    assert sorted(ids[dataset.split(frame, "dvge", 0)["test"]]) == [180001, 180002, *range(182638, 182648)]


@pytest.fixture
def cifar_i_root(tmp_path: Path) -> Path:
    make_cifar10(tmp_path, per_batch=40, n_test=50)
    make_cinic_imagenet(tmp_path / "cifar_i" / "imagenet", train=20, test=4)
    return tmp_path


def test_cifar_i_frame_and_images(cifar_i_root: Path) -> None:
    from PIL import Image

    dataset = open_dataset("cifar_i", cifar_i_root, {"imagenet_test": 3})
    task = build_task(dataset, None, "imagenet_major", "imagenet", 0)
    frame = task.attributes
    np.testing.assert_array_equal(frame.bias, frame.imagenet)
    train = frame[frame.is_test == 0]
    for label, name in enumerate(CIFAR_CLASSES):
        rows = train[train.label == label]
        major = int(name in GREY_CLASSES)
        assert (rows.imagenet == major).sum() == 19 and (rows.aligned == 1).sum() == 19
    test = frame[frame.is_test == 1]
    assert len(test) == 50 + 30 and test.imagenet.sum() == 30
    assert (test[test.imagenet == 1].groupby("label").size() == 3).all()
    # an ImageNet row shows its class's ImageNet image; CINIC-10's cifar10-* copies are skipped
    folder = cifar_i_root / "cifar_i" / "imagenet"
    for split, flag in (("train", 0), ("test", 1)):
        rows = frame[(frame.imagenet == 1) & (frame.is_test == flag)]
        for label in (0, 1):
            row = rows[rows.label == label].index[-1]
            count = int((rows.label == label).sum())
            name = f"n0{label}000000_{sorted(str(i) for i in range(20 if split == 'train' else 4))[count - 1]}.png"
            expected = np.asarray(Image.open(folder / split / CIFAR_CLASSES[label] / name)).transpose(2, 0, 1)
            np.testing.assert_array_equal(task.x[row], expected)
    raw = open_dataset("cifar10s", cifar_i_root).frame(0)
    cifar_rows = np.flatnonzero(frame.imagenet.to_numpy() == 0)
    colour_cifar10s = build_task(open_dataset("cifar10s", cifar_i_root), None, "label == 0", "grey", 0)
    same = np.flatnonzero((raw.grey.to_numpy() == 0) & (raw.is_test.to_numpy() == 0))
    np.testing.assert_array_equal(task.x[cifar_rows[: len(same)]], colour_cifar10s.x[same])


def test_cifar_i_missing_imagenet_folder_says_what_to_put_where(cifar_i_root: Path, fairbench) -> None:
    shutil.rmtree(cifar_i_root / "cifar_i" / "imagenet" / "test" / "ship")
    with pytest.raises(FairbenchError) as error:
        open_dataset("cifar_i", cifar_i_root).frame(0)
    message = str(error.value)
    assert "\n" not in message
    assert f"cifar_i: {cifar_i_root}/cifar_i/imagenet/test/ship/ is missing" in message
    assert f"in {cifar_i_root}/cifar_i/imagenet/{{train,test}}/<class>/" in message
    assert "airplane, automobile, bird" in message and "CINIC-10" in message
    status = catalog.dataset_status("cifar_i", cifar_i_root)
    assert status.state == "partial" and status.missing == ["cifar_i/imagenet/test/ship/"]
    listing = fairbench("data", "ls", "--data-dir", str(cifar_i_root))
    assert "cifar_i/imagenet/test/ship/" in listing.out and "CINIC-10" in listing.out


def test_cifar_i_too_few_imagenet_images(cifar_i_root: Path) -> None:
    dataset = open_dataset("cifar_i", cifar_i_root, {"imagenet_test": 5})
    with pytest.raises(FairbenchError, match=r"imagenet/test/airplane/ holds 4 ImageNet images, 5 are needed"):
        build_task(dataset, None, "imagenet_major", "imagenet", 0)


def test_celeba_bias_male_aligned_by_hand(tmp_path: Path) -> None:
    """Blond_Hair with bias Male (GBA Table 3): the fixture's blond people are the women, but for
    two training and three test images; the aligned rows are the others."""
    folder = make_celeba(tmp_path)
    path = folder / celeba.ATTR_FILE
    lines = path.read_bytes().decode().split("\r\n")
    blond, male = celeba.ATTRIBUTES.index("Blond_Hair"), celeba.ATTRIBUTES.index("Male")
    conflicting = {"000003.jpg", "000008.jpg", "162772.jpg", "162775.jpg", "180002.jpg"}
    for i, line in enumerate(lines[2:], start=2):
        if line:
            name, *values = line.split()
            flip = -1 if name in conflicting else 1
            values[blond] = str(-int(values[male]) * flip)
            lines[i] = name + " " + " ".join(f"{int(v):2d}" for v in values)
    path.write_bytes("\r\n".join(lines).encode())
    dataset = open_dataset("celeba", tmp_path)
    task = build_task(dataset, "lff", "Blond_Hair", "Male", 0, bias="Male")
    frame = task.attributes
    np.testing.assert_array_equal(task.bias, frame.Male)
    np.testing.assert_array_equal(task.aligned, ~frame.image.isin(conflicting).to_numpy())
    test = task.splits["test"]
    assert len(test) == 10 and (~task.aligned[test]).sum() == 3
    # without a bias key CelebA has none (no `bias` column): no aligned / conflicting accuracy
    assert build_task(dataset, "lff", "Blond_Hair", "Male", 0).bias is None
