"""Image datasets (CelebA, Colored MNIST, CIFAR-10S), their cache and `fairbench data` commands,
on fixtures in the official formats (tests/image_fixtures.py)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fairbench.data import catalog, celeba, cifar10s, colored_mnist, images
from fairbench.data.base import build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.metrics import acc_by_bias

try:  # importable both as a package module and from tests/ on sys.path
    from tests.image_fixtures import (
        CELEBA_IDS,
        CIFAR_CLASSES,
        celeba_attributes,
        celeba_partition,
        make_celeba,
        make_cifar10,
        make_mnist,
    )
except ImportError:  # pragma: no cover
    from image_fixtures import (
        CELEBA_IDS,
        CIFAR_CLASSES,
        celeba_attributes,
        celeba_partition,
        make_celeba,
        make_cifar10,
        make_mnist,
    )


@pytest.fixture(scope="module")
def celeba_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_celeba(tmp_path_factory.mktemp("celeba_master"))


@pytest.fixture
def celeba_root(tmp_path: Path, celeba_master: Path) -> Path:
    """A fresh copy of the CelebA fixture as <tmp>/data/celeba; returns <tmp>/data."""
    import shutil

    shutil.copytree(celeba_master, tmp_path / "data" / "celeba")
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _one_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRBENCH_DECODE_WORKERS", "1")


def _celeba(data: Path, **options) -> celeba.CelebA:
    return open_dataset("celeba", data, options)


# ------------------------------------------------------------------------------------ CelebA


def test_celeba_text_files_parse_official_layout(celeba_root: Path) -> None:
    raw = (celeba_root / "celeba" / celeba.ATTR_FILE).read_bytes()
    assert raw.split(b"\r\n")[1].endswith(b"Young ") and b"  1" in raw  # the layout we claim to read
    frame = _celeba(celeba_root).frame(0)
    assert len(frame) == len(CELEBA_IDS)
    assert frame["image_id"].tolist() == list(CELEBA_IDS)
    assert frame["image"].iloc[0] == "000001.jpg"
    expected = (celeba_attributes(CELEBA_IDS) > 0).astype(np.int8)
    np.testing.assert_array_equal(frame[list(celeba.ATTRIBUTES)].to_numpy(), expected)
    assert frame["partition"].tolist() == [celeba_partition(i) for i in CELEBA_IDS]
    assert set(_celeba(celeba_root).column_names()) <= set(frame.columns)


def test_celeba_attributes_need_no_images(celeba_root: Path) -> None:
    import shutil

    shutil.rmtree(celeba_root / "celeba" / celeba.IMAGES)
    dataset = _celeba(celeba_root)
    frame = dataset.frame(0)
    assert dataset.split(frame, "official", 0)["test"].size == 10
    with pytest.raises(FairbenchError, match="image folder .* is missing"):
        build_task(dataset, "official", "Attractive", "Male", 0)
    describe = pytest.importorskip("fairbench.data.describe")
    rows = describe.describe_task("celeba", "Attractive", "not (not Male and Young)", "dvge", 0, celeba_root, {})
    assert [r["split"] for r in rows] == ["all", "train", "val", "test"] and rows[0]["n"] == 40


def test_describe_checks_only_the_split_asked_for(tmp_path: Path, fairbench) -> None:
    """A partial download: attribute files for 32 images, all in the official train partition."""
    make_celeba(tmp_path, ids=tuple(range(1, 33)))
    args = ["data", "describe", "celeba", "--target", "Attractive", "--sensitive", "Male", "--data-dir", tmp_path]
    every = fairbench(*args, "--split", "all", "--json")
    assert every.code == 0, every.err
    rows = {row["split"]: row for row in json.loads(every.out)}
    assert [rows[s]["n"] for s in ("all", "train", "val", "test")] == [32, 32, 0, 0]
    assert rows["train"]["n_group1"] == 16 and np.isnan(rows["test"]["base_rate"])
    train = fairbench(*args, "--split", "train", "--json")
    assert train.code == 0 and [row["n"] for row in json.loads(train.out)] == [32], train.err
    test = fairbench(*args, "--split", "test")
    assert test.code == 2 and len(test.err.strip().splitlines()) == 1, test.err
    assert "celeba: the test split of protocol 'official' is empty (0 of the 32 rows here)" in test.err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: lines[:-3], "line 1 declares 40 images but 37 rows follow"),
        (lambda lines: [*lines[:5], lines[5][:30], *lines[6:]], "line 6 does not have"),
        (lambda lines: [lines[0], lines[1].replace(b"Young", b"Old"), *lines[2:]], "40 official attributes"),
        (lambda lines: [b"forty", *lines[1:]], "line 1 must be the image count"),
        (lambda lines: [*lines[:4], lines[4].replace(b" 1", b" 0"), *lines[5:]], "values other than -1/1"),
    ],
)
def test_celeba_damaged_attribute_file(celeba_root: Path, damage, message: str) -> None:
    path = celeba_root / "celeba" / celeba.ATTR_FILE
    lines = path.read_bytes().split(b"\r\n")[:-1]
    path.write_bytes(b"\r\n".join(damage(lines)) + b"\r\n")
    with pytest.raises(FairbenchError, match=message):
        _celeba(celeba_root).frame(0)


def test_celeba_partition_must_match(celeba_root: Path) -> None:
    path = celeba_root / "celeba" / celeba.PARTITION_FILE
    path.write_bytes(b"\r\n".join(path.read_bytes().split(b"\r\n")[:-2]) + b"\r\n")
    with pytest.raises(FairbenchError, match="do not match"):
        _celeba(celeba_root).frame(0)


def test_celeba_protocols(celeba_root: Path) -> None:
    dataset = _celeba(celeba_root)
    frame = dataset.frame(0)
    ids = frame["image_id"].to_numpy()
    official = dataset.split(frame, "official", 0)
    assert ids[official["train"]].max() <= 162770
    assert ids[official["val"]].min() >= 162771 and ids[official["val"]].max() <= 182637
    assert ids[official["test"]].min() >= 182638
    dvge = dataset.split(frame, "dvge", 3)
    assert ids[dvge["test"]].min() == 180001 and len(dvge["test"]) == 12
    train_range = np.union1d(dvge["train"], dvge["val"])
    assert ids[train_range].max() <= 180000 and len(train_range) == 28
    assert len(dvge["val"]) == 3 and not np.intersect1d(dvge["train"], dvge["val"]).size
    np.testing.assert_array_equal(dvge["val"], dataset.split(frame, "dvge", 3)["val"])
    assert any(not np.array_equal(dvge["val"], dataset.split(frame, "dvge", s)["val"]) for s in range(4, 8))


def test_celeba_build_task_and_cache(celeba_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = _celeba(celeba_root)
    task = build_task(dataset, "dvge", "Attractive", "not (not Male and Young)", 0)
    assert task.kind == "image" and task.x.shape == (40, 3, 64, 64) and task.x.dtype == np.uint8
    assert isinstance(task.x, np.memmap)
    frame = task.attributes
    np.testing.assert_array_equal(task.g, 1 - ((frame.Male == 0) & (frame.Young == 1)).to_numpy())
    direct = images.load_image(celeba_root / "celeba" / celeba.IMAGES / "000005.jpg", dataset.preprocess)
    np.testing.assert_array_equal(task.x[4], direct)
    # reused: a second dataset object must not decode anything
    monkeypatch.setattr(images, "build_cache", lambda *a, **k: pytest.fail("cache rebuilt"))
    again = build_task(_celeba(celeba_root), "official", "Male", "Young", 1)
    np.testing.assert_array_equal(again.x, task.x)


def test_celeba_cache_rebuilt_when_stale_or_truncated(celeba_root: Path) -> None:
    dataset = _celeba(celeba_root)
    frame = dataset.frame(0)
    first = np.array(dataset.inputs(frame, frozenset(), np.arange(3)).x)
    cache = images.ImageCache(celeba_root / "celeba" / "cache", "images_64px_draft")
    built = json.loads(cache.manifest_path.read_text())
    assert built["done"] and built["count"] == 40

    def rebuilt() -> np.ndarray:
        return np.array(_celeba(celeba_root).inputs(frame, frozenset(), np.arange(3)).x)

    with open(cache.array_path, "r+b") as handle:  # truncated array
        handle.truncate(1000)
    assert cache.problem(built["source_hash"], 40, (3, 64, 64)) == "truncated cache"
    np.testing.assert_array_equal(rebuilt(), first)
    cache.manifest_path.unlink()  # interrupted before the manifest: never trusted
    assert cache.problem(built["source_hash"], 40, (3, 64, 64)) == "unfinished cache"
    np.testing.assert_array_equal(rebuilt(), first)
    # a replaced image changes the source hash: the cache is rebuilt with the new pixels
    from PIL import Image

    Image.new("RGB", (178, 218), (250, 10, 10)).save(celeba_root / "celeba" / celeba.IMAGES / "000002.jpg")
    fresh = rebuilt()
    assert abs(int(fresh[1, 0].mean()) - 250) < 6 and np.array_equal(fresh[2:], first[2:])
    assert json.loads(cache.manifest_path.read_text())["source_hash"] != built["source_hash"]


def test_celeba_parallel_build_matches_serial_and_options(celeba_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _celeba(celeba_root).frame(0)
    serial = np.array(_celeba(celeba_root).inputs(frame, frozenset(), np.arange(3)).x)
    (celeba_root / "celeba" / "cache" / "images_64px_draft.json").unlink()
    monkeypatch.setenv("FAIRBENCH_DECODE_WORKERS", "2")
    np.testing.assert_array_equal(_celeba(celeba_root).inputs(frame, frozenset(), np.arange(3)).x, serial)
    full = _celeba(celeba_root, draft=False, size=32, crop=148).inputs(frame, frozenset(), np.arange(3)).x
    assert full.shape == (40, 3, 32, 32)
    assert (celeba_root / "celeba" / "cache" / "images_32px_crop148.json").exists()


def test_celeba_missing_and_corrupt_images(celeba_root: Path) -> None:
    folder = celeba_root / "celeba" / celeba.IMAGES
    (folder / "000003.jpg").unlink()
    (folder / "182640.jpg").unlink()
    with pytest.raises(FairbenchError, match=r"2 of 40 images missing .*000003\.jpg, 182640\.jpg"):
        build_task(_celeba(celeba_root), "official", "Attractive", "Male", 0)
    make_celeba(celeba_root / "celeba")  # restore
    data = (folder / "000007.jpg").read_bytes()
    (folder / "000007.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (folder / "000009.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(FairbenchError, match=r"2 of 40 images could not be decoded, e\.g\. 000007\.jpg"):
        build_task(_celeba(celeba_root), "official", "Attractive", "Male", 0)
    cache_dir = celeba_root / "celeba" / "cache"
    assert not list(cache_dir.glob("*.json")) and not list(cache_dir.glob("*.u8*"))


def test_import_celeba_drive_layout(tmp_path: Path, celeba_master: Path) -> None:
    import shutil

    drive = tmp_path / "download"
    shutil.copytree(celeba_master / celeba.IMAGES, drive / "Img" / celeba.IMAGES)
    (drive / "Anno").mkdir()
    (drive / "Eval").mkdir()
    shutil.copy(celeba_master / celeba.ATTR_FILE, drive / "Anno")
    shutil.copy(celeba_master / celeba.PARTITION_FILE, drive / "Eval")
    data = tmp_path / "data"
    with pytest.raises(FairbenchError, match="not the official 75e246fa"):
        catalog.import_files("celeba", drive, data)
    lines = catalog.import_files("celeba", drive, data, verify=False)
    assert (data / "celeba" / celeba.IMAGES).is_symlink() and "linked" in lines[1]
    assert catalog.import_files("celeba", drive, data, verify=False)[1].endswith("already in place")
    assert build_task(_celeba(data), "official", "Attractive", "Male", 0).x.shape[0] == 40
    assert catalog.dataset_status("celeba", data).state == "present"
    copied = tmp_path / "copied"
    catalog.import_files("celeba", drive, copied, copy=True, verify=False)
    assert not (copied / "celeba" / celeba.IMAGES).is_symlink()
    assert len(list((copied / "celeba" / celeba.IMAGES).iterdir())) == 40


def test_import_celeba_reports_problems(tmp_path: Path, celeba_master: Path) -> None:
    import shutil

    src = tmp_path / "mine" / "celeba"
    shutil.copytree(celeba_master, src)
    (src / celeba.IMAGES / "000004.jpg").unlink()
    with pytest.raises(FairbenchError, match=r"1 of 40 images missing .*000004\.jpg"):
        catalog.import_files("celeba", src.parent, tmp_path / "data", verify=False)
    (src / celeba.IMAGES / "000004.jpg").write_bytes(b"")
    with pytest.raises(FairbenchError, match=r"1 of 40 images empty"):
        catalog.import_files("celeba", src, tmp_path / "data", verify=False)
    shutil.rmtree(src / celeba.IMAGES)
    (src / "img_align_celeba.zip").write_bytes(b"PK")
    with pytest.raises(FairbenchError, match="unzip it"):
        catalog.import_files("celeba", src, tmp_path / "data", verify=False)
    with pytest.raises(FairbenchError, match="cannot be downloaded automatically.*data import celeba"):
        catalog.fetch("celeba", tmp_path / "data")


# ----------------------------------------------------------------------------- Colored MNIST


def _check_lff_colours(task, skew: float, test_aligned: float, sigma: float) -> None:
    frame = task.attributes
    pool = frame[frame.is_test == 0]
    for digit, part in pool.groupby("digit"):
        n = len(part)
        assert abs(part.aligned.sum() - (1 - skew) * n) <= 1  # LfF's rounded cumulative cut points
        others = part.color[part.aligned == 0].value_counts()
        assert digit not in others.index and (others.max() - others.min() <= 1 if len(others) else True)
    test = frame[frame.is_test == 1]
    assert abs(test.aligned.mean() - test_aligned) < 0.02
    drawn = frame[["red", "green", "blue"]].to_numpy()
    offsets = drawn - colored_mnist.COLORS[frame.color.to_numpy()]
    inside = (drawn > 0.02) & (drawn < 0.98)
    assert abs(offsets[inside].std() - sigma) < 0.2 * sigma
    assert np.array_equal(task.bias, frame.color.to_numpy())


def test_colored_mnist_from_fixture_files(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    dataset = open_dataset("colored_mnist", tmp_path, {"skew": 0.05, "severity": 1})
    task = build_task(dataset, None, "digit >= 5", "color >= 5", 0)
    assert task.x.shape == (800, 3, 28, 28) and task.x.dtype == np.uint8
    assert task.splits["test"].size == 200 and task.splits["val"].size == 60
    _check_lff_colours(task, 0.05, 0.1, 0.05)
    grey = colored_mnist.read_idx(tmp_path / "mnist" / colored_mnist.TRAIN_IMAGES)
    colour = task.attributes[["red", "green", "blue"]].to_numpy(np.float32)[7]
    np.testing.assert_array_equal(task.x[7], (colour[:, None, None] * grey[7].astype(np.float32)).astype(np.uint8))
    options = {"skew": 0.05, "severity": 1}
    same = build_task(open_dataset("colored_mnist", tmp_path, options), None, "digit >= 5", "color >= 5", 0)
    np.testing.assert_array_equal(same.x, task.x)
    other = build_task(dataset, None, "digit >= 5", "color >= 5", 1)
    assert not np.array_equal(other.attributes.color, task.attributes.color)
    scores = acc_by_bias(task.attributes.digit.to_numpy(), task.attributes.digit.to_numpy(), task.bias)
    assert scores["acc_aligned"] == 1.0 and scores["acc_conflicting"] == 1.0


def test_colored_mnist_wears_lffs_colours(tmp_path: Path) -> None:
    """A white (255) stroke pixel shows its colour class's mean colour from LfF's colors.th times
    255, truncated: class 0 (0.98368, 0.31252, 0.16858) gives (250, 79, 42), class 9 (0.83366,
    0.20241, 0.26694) gives (212, 51, 68); severity 5's noise (sigma 0.002, half a grey level)
    moves a channel by 2 levels at most."""
    folder = make_mnist(tmp_path)
    dataset = open_dataset("colored_mnist", tmp_path, {"skew": 0.5, "severity": 5})
    task = build_task(dataset, None, "digit >= 5", "color >= 5", 0)
    frame = task.attributes
    files = {0: colored_mnist.TRAIN_IMAGES, 1: colored_mnist.TEST_IMAGES}
    grey = {flag: colored_mnist.read_idx(folder / name) for flag, name in files.items()}
    for colour, expected in ((0, (250, 79, 42)), (9, (212, 51, 68))):
        rows = np.flatnonzero(frame.color.to_numpy() == colour)
        white = [task.x[r][:, grey[frame.is_test.iat[r]][frame.source_index.iat[r]] == 255] for r in rows]
        pixels = np.concatenate(white, axis=1).astype(int)
        assert pixels.shape[1] > 100
        assert (np.abs(pixels - np.array(expected)[:, None]) <= 2).all()


def test_colored_mnist_bad_inputs(tmp_path: Path) -> None:
    folder = make_mnist(tmp_path)
    with pytest.raises(FairbenchError, match="option severity: 7 is out of range; it must be in \\[1, 5\\]"):
        open_dataset("colored_mnist", tmp_path, {"severity": 7}).frame(0)
    with pytest.raises(FairbenchError, match="has no option 'skw'"):
        open_dataset("colored_mnist", tmp_path, {"skw": 0.1})
    path = folder / colored_mnist.TEST_LABELS
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-2]))  # 2 labels short
    with pytest.raises(FairbenchError, match="truncated"):
        open_dataset("colored_mnist", tmp_path).frame(0)
    (folder / colored_mnist.TRAIN_IMAGES).unlink()
    with pytest.raises(FairbenchError, match="run 'fairbench data fetch colored_mnist'.*source: t10k"):
        open_dataset("colored_mnist", tmp_path).ensure_files(allow_download=False)


def test_colored_mnist_on_real_mnist_test_set(real_data) -> None:
    root = real_data(f"mnist/{colored_mnist.TEST_IMAGES}", f"mnist/{colored_mnist.TEST_LABELS}")
    dataset = open_dataset("colored_mnist", root, {"source": "t10k", "skew": 0.01, "severity": 4})
    task = build_task(dataset, "lff", "digit >= 5", "color >= 5", 0)
    assert task.x.shape == (10000, 3, 28, 28)
    assert abs(len(task.splits["test"]) - 3000) <= 5 and sum(len(v) for v in task.splits.values()) == 10000
    _check_lff_colours(task, 0.01, 0.1, 0.005)
    frame = task.attributes
    pool = frame.is_test == 0
    assert abs(frame.aligned[pool].mean() - 0.99) < 0.002
    # the image's colour is its colour class: the brightest pixel's RGB is close to 255 * mu_c
    brightest = task.x.reshape(10000, 3, -1).max(axis=2) / 255.0
    nearest = np.argmin(((brightest[:, None, :] - colored_mnist.COLORS[None]) ** 2).sum(-1), axis=1)
    assert (nearest == frame.color.to_numpy()).mean() > 0.99
    # the labels and colours follow the real files
    labels = colored_mnist.read_idx(root / "mnist" / colored_mnist.TEST_LABELS)
    np.testing.assert_array_equal(frame.digit.to_numpy(), labels)


# -------------------------------------------------------------------------------- CIFAR-10S


def test_cifar10s_skew_and_test_copies(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    dataset = open_dataset("cifar10s", tmp_path)
    task = build_task(dataset, None, "grey_major", "grey", 0)
    frame = task.attributes
    assert task.x.shape == (300, 3, 32, 32) and len(frame) == 300
    train = frame[frame.is_test == 0]
    for label, part in train.groupby("label"):
        majority = int(CIFAR_CLASSES[label] in ("airplane", "bird", "deer", "frog", "ship"))
        assert (part.grey == majority).sum() == 19 and len(part) == 20
    test = frame[frame.is_test == 1]
    assert len(test) == 100 and test.grey.sum() == 50
    assert (test.groupby("source_index").grey.nunique() == 2).all()
    raw = cifar10s.read_batch(tmp_path / cifar10s.FOLDER / "test_batch")[0]
    colour_rows = np.flatnonzero((frame.is_test == 1) & (frame.grey == 0))
    grey_rows = np.flatnonzero((frame.is_test == 1) & (frame.grey == 1))
    np.testing.assert_array_equal(task.x[colour_rows], raw)
    from PIL import Image

    luma = np.asarray(Image.fromarray(raw[3].transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(task.x[grey_rows[3]], np.stack([luma] * 3))
    assert np.array_equal(task.bias, frame.grey.to_numpy())
    assert np.array_equal(task.bias == task.y, frame.aligned.to_numpy() == 1)
    assert not np.intersect1d(task.splits["train"], task.splits["val"]).size
    assert len(task.splits["val"]) == 20 and len(task.splits["test"]) == 100
    with pytest.raises(FairbenchError, match="damaged"):
        (tmp_path / cifar10s.FOLDER / "data_batch_2").write_bytes(b"\x80\x02}q")
        open_dataset("cifar10s", tmp_path).frame(0)


# ------------------------------------------------------------------------- fetch, import, ls


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support and records the Range headers it saw."""

    ranges: list[str] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        header = self.headers.get("Range")
        start = 0
        if header:
            type(self).ranges.append(header)
            start = int(header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path: Path):
    """(base URL, folder served) for a local HTTP server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    _RangeHandler.ranges = []

    def handler(*args, **kwargs):
        return _RangeHandler(*args, directory=str(served), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fetch_mnist_resumes_and_checks(tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    make_mnist(served.parent / "fixture")
    for file in (served.parent / "fixture" / "mnist").iterdir():
        (served / file.name).write_bytes(file.read_bytes())
        monkeypatch.setitem(colored_mnist.MD5, file.name, _md5(file))
    monkeypatch.setattr(colored_mnist, "SHA256", {})
    files = tuple(colored_mnist.RemoteFile(f.path, url + Path(f.path).name) for f in colored_mnist.ColoredMNIST.files)
    monkeypatch.setattr(colored_mnist.ColoredMNIST, "files", files)
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    whole = (served / colored_mnist.TRAIN_IMAGES).read_bytes()
    (data / "mnist" / (colored_mnist.TRAIN_IMAGES + ".part")).write_bytes(whole[:1000])
    lines = catalog.fetch("colored_mnist", data)
    assert len(lines) == 4 and all("checksum ok" in line for line in lines)
    assert _RangeHandler.ranges == ["bytes=1000-"]
    assert (data / "mnist" / colored_mnist.TRAIN_IMAGES).read_bytes() == whole
    assert "present" in catalog.fetch("colored_mnist", data)[0]
    assert catalog.dataset_status("colored_mnist", data).state == "present"
    # a file with the wrong checksum is set aside, not used
    (data / "mnist" / colored_mnist.TEST_LABELS).unlink()
    monkeypatch.setitem(colored_mnist.MD5, colored_mnist.TEST_LABELS, "0" * 32)
    with pytest.raises(FairbenchError, match=r"expected 0{32}; kept it as .*\.bad"):
        catalog.fetch("colored_mnist", data)
    status = catalog.dataset_status("colored_mnist", data)
    assert status.state == "partial" and status.action == "fairbench data fetch colored_mnist"


def test_fetch_cifar10_archive(tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    fixture = make_cifar10(served.parent / "fixture", per_batch=10, n_test=10)
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fixture / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    members = {p.name: _md5(p) for p in (fixture / "cifar-10-batches-py").iterdir()}
    monkeypatch.setattr(cifar10s, "URL", url + archive.name)
    monkeypatch.setattr(cifar10s, "ARCHIVE_MD5", _md5(archive))
    monkeypatch.setattr(cifar10s, "MEMBER_MD5", members)
    data = tmp_path / "data"
    assert catalog.dataset_status("cifar10s", data).state == "missing"
    assert "md5 ok" in catalog.fetch("cifar10s", data)[0]
    assert catalog.dataset_status("cifar10s", data).state == "present"
    # the dataset fetches by itself when allowed
    other = tmp_path / "other"
    assert build_task(open_dataset("cifar10s", other), None, "label == 0", "grey", 0).x.shape == (
        70,
        3,
        32,
        32,
    )
    monkeypatch.setattr(cifar10s, "ARCHIVE_MD5", "f" * 32)
    with pytest.raises(FairbenchError, match="md5 .* expected f{32}"):
        catalog.fetch("cifar10s", tmp_path / "third")


def test_fetch_offline_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(cifar10s, "URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    with pytest.raises(FairbenchError, match="download it by hand into .*cifar10/"):
        catalog.fetch("cifar10s", tmp_path)
    with pytest.raises(FairbenchError, match="unknown dataset 'cifar10' .*did you mean 'cifar10s'"):
        catalog.fetch("cifar10", tmp_path)


def test_commands(tmp_path: Path, celeba_master: Path) -> None:
    from fairbench.data.commands import COMMANDS, fetch, import_, ls

    assert [c.name for c in COMMANDS] == ["fetch", "import", "ls"]
    runner = CliRunner()
    data = tmp_path / "data"
    make_mnist(data, n_train=20, n_test=20)
    (data / "mnist" / colored_mnist.TRAIN_IMAGES).unlink()
    result = runner.invoke(ls, ["--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    text = result.output
    heads = {line.split()[0]: line for line in text.splitlines() if line and not line.startswith(" ")}
    assert {"celeba", "colored_mnist", "cifar10s", "adult", "synthetic"} <= set(heads)
    assert "missing" in heads["celeba"] and "to get it: download img_align_celeba.zip" in text
    assert "partial" in heads["colored_mnist"] and "missing: mnist/train-images-idx3-ubyte.gz" in text
    assert "option source: t10k works now" in text and "generated" in heads["synthetic"]
    assert "to get it: fairbench data fetch adult" in text
    result = runner.invoke(import_, ["celeba", str(celeba_master), "--skip-checksums", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "linked" in result.output
    result = runner.invoke(ls, ["--data-dir", str(data)])
    assert "present" in next(line for line in result.output.splitlines() if line.startswith("celeba"))
    result = runner.invoke(import_, ["adult", str(celeba_master), "--data-dir", str(data)])
    assert isinstance(result.exception, FairbenchError) and "fairbench data fetch adult" in str(result.exception)
    result = runner.invoke(fetch, ["celeba", "--data-dir", str(data)])
    assert isinstance(result.exception, FairbenchError)


TOY_PLUGIN = '''
import gzip

import pandas as pd

from fairbench.data.base import data_dir_from_env
from fairbench.data.download import RemoteFile, download
from fairbench.data.tabular import TabularDataset


class Toy(TabularDataset):
    """A plugin dataset published gzipped: its own fetch unpacks it."""

    name = "toy"
    description = "a plugin table published as toy.csv.gz"
    protocols = ("random",)
    label = "y"
    folder = "toy"
    files = (RemoteFile("toy/toy.csv", "{url}toy.csv.gz"),)
    continuous = ("x",)

    @classmethod
    def fetch(cls, data_dir=None, files=None):
        root = data_dir_from_env(data_dir)
        packed = download(RemoteFile("toy/toy.csv.gz", cls.files[0].url, "{sha256}"), root, cls.name)
        (root / "toy" / "toy.csv").write_bytes(gzip.decompress(packed.read_bytes()))
        return [f"toy: unpacked {{packed.name}}"]

    def read_frame(self, seed):
        return pd.read_csv(self.root / "toy.csv")
'''


def test_plugin_dataset_gets_data_commands_for_free(tmp_path: Path, server, plugin_site) -> None:
    """`data ls | fetch | describe` ask the plugin's own class: no code in fairbench for it."""
    import subprocess
    import sys

    url, served = server
    rows = "x,y\n" + "".join(f"{i / 10 - 1},{i % 2}\n" for i in range(20))
    (served / "toy.csv.gz").write_bytes(gzip.compress(rows.encode()))
    sha256 = hashlib.sha256((served / "toy.csv.gz").read_bytes()).hexdigest()
    site = plugin_site(
        "fairbench-toy",
        {"fairbench.datasets": {"toy": "fairbench_toy:Toy"}},
        fairbench_toy=TOY_PLUGIN.format(url=url, sha256=sha256),
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "200"}
    data = tmp_path / "data"

    def fairbench(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "fairbench", "data", *args, "--data-dir", str(data)]
        return subprocess.run(command, env=env, capture_output=True, text=True)

    listing = fairbench("ls").stdout
    assert re.search(r"^toy +tabular +missing", listing, re.MULTILINE), listing
    assert "to get it: fairbench data fetch toy" in listing
    fetched = fairbench("fetch", "toy")
    assert fetched.returncode == 0 and fetched.stdout.strip() == "toy: unpacked toy.csv.gz", fetched.stderr
    assert (data / "toy" / "toy.csv").read_text() == rows
    assert re.search(r"^toy +tabular +present", fairbench("ls").stdout, re.MULTILINE)
    described = fairbench("describe", "toy", "--target", "y", "--sensitive", "x > 0", "--json")
    assert described.returncode == 0 and json.loads(described.stdout)[0]["n"] == 20, described.stderr
