"""Command-line stages the Snakemake rules call (`python -m diffrepro.stages.<name>`)."""

import argparse
import sys

from ..errors import UserError


def run_stage(main) -> None:
    try:
        main()
    except Exception as err:
        if not isinstance(err, UserError):  # a bug: keep the traceback
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every torch stage takes: where its output goes and how many threads it may use."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    return p


def parse_stage_args(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    import torch

    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args
