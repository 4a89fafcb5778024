"""CIFAR-10 (paper scale): locate (configured path, else an earlier download, else download),
verify, and store as one uint8 npz with the keys Fashion-MNIST's has (diffrepro.data), images
[N, 3, 32, 32].

The source is the official "python version" (https://www.cs.toronto.edu/~kriz/cifar.html): one
tar.gz holding cifar-10-batches-py/, where data_batch_1..5 (train) and test_batch are pickled
dicts whose b"data" is uint8 [10000, 3072] (per image the 1024 red values row by row, then the
green, then the blue) and b"labels" a list of 10000 class indices.
"""

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from .data import DataError, write_npz

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
# MD5 of the archive as published on the CIFAR page (URL above).
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# MD5s of the extracted batch files, for a pre-staged folder; the page publishes none, these are
# the ones torchvision.datasets.CIFAR10 checks.
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
SIDE, CHANNELS, CLASSES = 32, 3, 10

HOW_TO_GET = (f"download {URL} (MD5 {ARCHIVE_MD5}) and set `cifar10_root: <path to {ARCHIVE} or to its "
              f"extracted {FOLDER} folder>` in workflow/config.yaml (or --config cifar10_root=<path>)")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str, what: str) -> None:
    digest = _md5(path)
    if digest != expected:
        raise DataError(f"{path} has MD5 {digest}, expected {expected} (truncated, or not the {what}); "
                        f"delete it and {HOW_TO_GET}")


def _read_batch(raw: bytes, where: str):
    """(images uint8 [n, 3, 32, 32], labels uint8 [n]) from one pickled batch."""
    try:
        # the batches were pickled by Python 2: bytes keys, and numpy arrays need encoding="bytes"
        batch = pickle.load(io.BytesIO(raw), encoding="bytes")
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except Exception as err:  # pickle raises many types for a damaged stream
        raise DataError(f"{where} is not a CIFAR-10 batch ({type(err).__name__}: {err}); {HOW_TO_GET}") from None
    n = len(labels)
    if data.dtype != np.uint8 or data.shape != (n, CHANNELS * SIDE * SIDE) or labels.min(initial=0) < 0 \
            or labels.max(initial=0) >= CLASSES:
        raise DataError(f"{where}: data {data.dtype} {data.shape} with {n} labels is not a CIFAR-10 batch; {HOW_TO_GET}")
    return data.reshape(n, CHANNELS, SIDE, SIDE), labels.astype(np.uint8)


def _batches_from_archive(path: Path, archive_md5: str) -> dict:
    _check_md5(path, archive_md5, "CIFAR-10 python archive")
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in BATCH_MD5:
                member = tar.extractfile(f"{FOLDER}/{name}")
                out[name] = _read_batch(member.read(), f"{path}:{FOLDER}/{name}")
    except KeyError as err:
        raise DataError(f"{path} lacks {err} (not the CIFAR-10 python archive); {HOW_TO_GET}") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path} is truncated or corrupt ({err}); delete it and {HOW_TO_GET}") from None
    return out


def _batches_from_folder(folder: Path, batch_md5: dict) -> dict:
    out = {}
    for name, expected in batch_md5.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{folder} lacks {name} (not an extracted {FOLDER} folder); {HOW_TO_GET}")
        _check_md5(path, expected, f"CIFAR-10 batch {name}")
        out[name] = _read_batch(path.read_bytes(), str(path))
    return out


def download(dest_dir, url: str = URL, archive_md5: str = ARCHIVE_MD5) -> Path:
    """The archive fetched into dest_dir; it gets its final name only once its MD5 is right."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target, part = dest_dir / ARCHIVE, dest_dir / (ARCHIVE + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise DataError(f"CIFAR-10 is not configured and the download from {url} failed ({err}); {HOW_TO_GET}") from None
    try:
        _check_md5(part, archive_md5, "CIFAR-10 python archive")
    except DataError:
        part.unlink()
        raise
    os.replace(part, target)
    return target


def load_raw(root=None, download_dir=None, *, url: str = URL, archive_md5: str = ARCHIVE_MD5,
             batch_md5: dict = BATCH_MD5) -> dict:
    """train/test images and labels from `root` (the archive, its folder, or a folder holding
    either), else from an earlier download in download_dir, else downloaded there.

    url and the checksums are parameters so that tests can serve a small fake archive."""
    if root:
        root = Path(root)
        if not root.exists():
            raise DataError(f"cifar10_root {root} does not exist; {HOW_TO_GET}")
        if root.is_file():
            batches = _batches_from_archive(root, archive_md5)
        elif (root / FOLDER).is_dir():
            batches = _batches_from_folder(root / FOLDER, batch_md5)
        elif (root / "data_batch_1").is_file():
            batches = _batches_from_folder(root, batch_md5)
        elif (root / ARCHIVE).is_file():
            batches = _batches_from_archive(root / ARCHIVE, archive_md5)
        else:
            raise DataError(f"cifar10_root {root} holds neither {ARCHIVE} nor a {FOLDER} folder; {HOW_TO_GET}")
    elif download_dir and (Path(download_dir) / ARCHIVE).is_file():
        batches = _batches_from_archive(Path(download_dir) / ARCHIVE, archive_md5)
    elif download_dir:
        batches = _batches_from_archive(download(download_dir, url, archive_md5), archive_md5)
    else:
        raise DataError(f"CIFAR-10 is not configured and downloading is off; {HOW_TO_GET}")
    out = {}
    for split, names in SPLITS.items():
        out[f"{split}_images"] = np.concatenate([batches[name][0] for name in names])
        out[f"{split}_labels"] = np.concatenate([batches[name][1] for name in names])
    return out


def prepare(out_path, root=None, download_dir=None, **source) -> None:
    """Verify CIFAR-10 and store it as one npz (diffrepro.data.load_split reads it)."""
    write_npz(out_path, load_raw(root, download_dir, **source))
