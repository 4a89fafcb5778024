"""Command-line stages the Snakemake rules call (`python -m diffrepro.stages.<name>`)."""

import argparse
import sys

# Failures a user can fix (bad data, damaged file, bad config, diverged run, wrong image range):
# they get one actionable line; anything else is a bug and keeps its traceback.
USER_ERRORS = {"DataError", "CheckpointError", "ConfigError", "TrainingDiverged", "ImageSetError",
               "FeatureExtractorUnavailable", "StaleResults", "ShardError", "DeviceUnavailable",
               "UntrustedWeightsError", "DamagedFileError",
               "SamplingDiverged"}


def run_stage(main) -> None:
    try:
        main()
    except Exception as err:
        if type(err).__name__ not in USER_ERRORS:
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
