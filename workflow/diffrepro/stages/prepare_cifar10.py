"""Stage: locate, verify and store CIFAR-10 as one npz."""

import argparse

from ..cifar10 import prepare
from . import run_stage


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--root", default="", help="cifar-10-python.tar.gz, its extracted folder, or a folder holding either")
    p.add_argument("--download-dir", default="", help="empty: never download")
    args = p.parse_args(argv)
    prepare(args.out, args.root or None, args.download_dir or None)


if __name__ == "__main__":
    run_stage(main)
