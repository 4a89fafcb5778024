"""Fashion-MNIST: locate (config path → Debian package → download), verify, load, pad, scale.
The npz writing and loading here serve every data set (CIFAR-10: diffrepro.cifar10).

The prepared data set is one uint8 npz (train/test images 28x28 + labels); padding to 32x32,
resampling and the input scaling are applied when a stage loads it, so every scaling and
resolution shares one verified copy.
"""

import gzip
import hashlib
import os
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CANONICAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# SHA-256 of the *decompressed* idx files: the Debian package recompresses the canonical .gz
# files, so the compressed bytes differ while the content is identical.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(UserError, RuntimeError):
    """A data set is missing or damaged; the message says how to get a good copy."""


HOW_TO_GET = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four "
    f"files from {CANONICAL_URL} into a folder and set `data_root: <folder>` in workflow/config.yaml"
)


def _read_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST container format: magic, dims, big-endian sizes, uint8 data)."""
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("not an uint8 IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"IDX payload has {data.size} values, header says {int(np.prod(dims))}")
    return data.reshape(dims)


def _candidates(stem: str, roots):
    for root in roots:
        for name in (stem + ".gz", stem):
            path = Path(root) / name
            if path.exists():
                yield path


def _load_file(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path} is truncated or corrupt ({err}); delete it and {HOW_TO_GET}") from None
    return raw


def _download(stem: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (stem + ".gz")
    tmp = target.with_suffix(".gz.part")
    try:
        with urllib.request.urlopen(CANONICAL_URL + stem + ".gz", timeout=60) as response:
            tmp.write_bytes(response.read())
    except OSError as err:
        raise DataError(f"Fashion-MNIST not found locally and the download failed ({err}); {HOW_TO_GET}") from None
    os.replace(tmp, target)
    return target


def _say_source(stem: str, path: Path, data_root) -> None:
    """Log (stderr: the rule's log) which file is used, and why not data_root's when it was set."""
    line = f"{stem}: using {path}"
    if data_root and Path(data_root).resolve() not in Path(path).resolve().parents:
        line += f" (data_root {data_root} has neither {stem}.gz nor {stem})"
    print(line, file=sys.stderr)


def load_raw(data_root=None, download_dir=None) -> dict:
    """The four arrays, from data_root, then Debian's package, then the canonical download."""
    roots = [r for r in (data_root, DEBIAN_ROOT, download_dir) if r]
    if data_root and not Path(data_root).is_dir():
        raise DataError(f"data_root {data_root} does not exist; point it at a folder with the Fashion-MNIST files or unset it")
    out = {}
    for key, stem in FILES.items():
        path = next(_candidates(stem, roots), None)
        if path is None:
            if download_dir is None:
                raise DataError(f"Fashion-MNIST file {stem} not found in {', '.join(map(str, roots))}; {HOW_TO_GET}")
            path = _download(stem, Path(download_dir))
        _say_source(stem, path, data_root)
        raw = _load_file(path)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != SHA256[stem]:
            raise DataError(f"{path} has SHA-256 {digest[:12]}…, expected {SHA256[stem][:12]}… (truncated or not "
                            f"Fashion-MNIST); delete it and {HOW_TO_GET}")
        out[key] = _read_idx(raw)
    return out



def write_npz(out_path, arrays: dict) -> None:
    """Store arrays as one npz, atomically: a killed run leaves no file a later run would trust."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out_path)


def prepare(out_path, data_root=None, download_dir=None) -> None:
    """Verify the raw files and store them as one npz."""
    write_npz(out_path, load_raw(data_root, download_dir))


def load_split(npz_path, split: str, resolution: int = 32, limit: int | None = None):
    """(images float32 [N,C,R,R] in [0,1], labels int64 [N]) for split 'train' or 'test'.

    Fashion-MNIST (stored [N,28,28]) is zero-padded to 32x32 (as the fast.ai course did) with C=1;
    CIFAR-10 (stored [N,3,32,32], diffrepro.cifar10) is used as it is. Other resolutions resample
    bilinearly (Chen 2023 studies resolution; each data set has only one native size).
    """
    try:
        with np.load(npz_path) as f:
            images, labels = f[f"{split}_images"], f[f"{split}_labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{npz_path} is unreadable ({err}); delete it and rerun the workflow to rebuild it") from None
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32) / 255.0
    if x.ndim == 3:  # grey [N, H, W]: one channel
        x = x[:, None]
    return resample(pad_fashion_mnist(x), resolution), labels.astype(np.int64)


def pad_fashion_mnist(images: np.ndarray) -> np.ndarray:
    """Images [N,C,H,W] at Fashion-MNIST's native 28x28 zero-padded to 32x32 (as the fast.ai course
    did); any other size is returned as it is."""
    if images.shape[-2:] != (28, 28):
        return images
    return np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))


def resample(images: np.ndarray, resolution: int) -> np.ndarray:
    """Images [N,C,H,W] in [0,1] resized bilinearly (antialiased when shrinking) to resolution²."""
    if images.shape[-1] == resolution:
        return images
    import torch
    import torch.nn.functional as F

    x = F.interpolate(torch.from_numpy(np.ascontiguousarray(images)), size=(resolution, resolution),
                      mode="bilinear", antialias=resolution < images.shape[-1], align_corners=False)
    return x.clamp(0, 1).numpy()
