"""Stage: locate, verify and store Fashion-MNIST as one npz."""

import argparse

from ..data import prepare
from . import run_stage


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--data-root", default="")
    p.add_argument("--download-dir", default="", help="empty: never download")
    args = p.parse_args(argv)
    prepare(args.out, args.data_root or None, args.download_dir or None)


if __name__ == "__main__":
    run_stage(main)
