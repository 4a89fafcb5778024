"""`python -m diffrepro score PATH`: score your own images with the workflow's FID protocol.

PATH is a sample file the workflow wrote, an .npz/.npy of images ([N, H, W], [N, C, H, W] or
[N, H, W, C]; uint8 0-255 or floats in [0, 1]) or a folder of PNG files. 28x28 images are zero-padded
to 32x32 as the workflow pads Fashion-MNIST; other sizes are resized to the reference's resolution.
They are scored against a finished run's reference set with its classifier
(`--results results/quick` by default): FID and KID by torch-fidelity and clean-fid, the bootstrap
interval and FID-infinity, and the pixel checks, as rows of metrics.csv (paper `user`).
"""

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from .errors import UserError


class ImagesUnreadable(UserError):
    pass


def _as_nchw(array: np.ndarray, source) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ImagesUnreadable(f"{source}: images of shape {array.shape}; give [N, H, W], [N, C, H, W] or [N, H, W, C] "
                               "with C = 1 or 3")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def read_images(path: Path) -> np.ndarray:
    """[N, C, H, W] float32 in [0, 1] from a sample file, an .npz/.npy array or a folder of PNGs."""
    if path.is_dir():
        from PIL import Image

        files = sorted(path.glob("*.png"))
        if not files:
            raise ImagesUnreadable(f"{path}: no .png files in this folder")
        return _as_nchw(np.stack([np.asarray(Image.open(f).convert("L")) for f in files]), path)
    if path.suffix == ".npy":
        return _as_nchw(np.load(path), path)
    if path.suffix == ".npz":
        with np.load(path) as f:
            names = list(f.files)
            key = "images" if "images" in names else names[0] if len(names) == 1 else None
            if key is None:
                raise ImagesUnreadable(f"{path}: arrays {names}; name the images 'images' or store one array")
            return _as_nchw(f[key], path)
    raise ImagesUnreadable(f"{path}: not a folder, .npz or .npy file")


def score(path: Path, classifier: Path, reference: Path, seed: int = 0, kid_subset_size: int = 1000, kid_subsets: int = 50):
    """The metrics rows of the images at `path` against `reference` (the evaluate stage's rows)."""
    from .data import pad_fashion_mnist, resample
    from .features import FMNIST_CLASSIFIER, Extractor
    from .stages.evaluate import read_reference_set, score_set, set_metrics_table

    reference_set, reference_pixels = read_reference_set(reference)
    images = resample(pad_fashion_mnist(read_images(path)), reference_pixels.shape[-1])
    fid = {"kid_subset_size": kid_subset_size, "kid_subsets": kid_subsets}
    rows, _ = score_set(images, reference, Extractor(FMNIST_CLASSIFIER, classifier), fid, seed, str(path))
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]
    run = {"paper": "user", "experiment": path.stem or path.name, "input_scaling": "none", "sampler": "none",
           "sampler_name": "none", "steps": 0, "nfe": 0, "seed": seed, "config_hash": digest}
    return set_metrics_table(run, rows, images, reference_set, reference_pixels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffrepro", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    s = commands.add_parser("score", help="FID/KID of your own images against a run's reference set")
    s.add_argument("path", type=Path)
    s.add_argument("--results", type=Path, default=Path("results/quick"),
                   help="a finished run's results folder: its classifier and reference set are used")
    s.add_argument("--out", type=Path, help="CSV to write (default: print the rows)")
    s.add_argument("--seed", type=int, default=0, help="seed of the KID subsets and the bootstrap")
    args = p.parse_args(argv)
    classifier = args.results / "classifier" / "classifier.pt"
    reference = args.results / "reference" / "fashion_mnist_test.npz"
    try:
        for needed in (args.path, classifier, reference):
            if not needed.exists():
                raise ImagesUnreadable(f"{needed} does not exist" + ("" if needed == args.path else
                                       f"; run the workflow at that scale first (it writes {needed.name})"))
        table = score(args.path, classifier, reference, args.seed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.out:
        table.to_csv(args.out, index=False)
    else:
        print(table.to_csv(index=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
