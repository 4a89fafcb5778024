"""Command-line stages the Snakemake rules call (`python -m diffrepro.stages.<name>`)."""

import sys

# Failures a user can fix (bad data, damaged file, bad config, diverged run, wrong image range):
# they get one actionable line; anything else is a bug and keeps its traceback.
USER_ERRORS = {"DataError", "CheckpointError", "ConfigError", "TrainingDiverged", "ImageSetError",
               "FeatureExtractorUnavailable", "StaleResults"}


def run_stage(main) -> None:
    try:
        main()
    except Exception as err:
        if type(err).__name__ not in USER_ERRORS:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
