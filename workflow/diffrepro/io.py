"""Atomic file writes and safe checkpoint loading: a killed job never leaves a file that a
later run would trust."""

import os
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A checkpoint or model file is unreadable; the message says what to delete or rerun."""


def atomic_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, what="checkpoint"):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{path}: {what} is truncated or corrupt ({type(err).__name__}); "
                              f"delete it and rerun the workflow to rebuild it") from None
