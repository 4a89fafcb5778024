"""Atomic file writes and safe checkpoint loading: a killed job never leaves a file that a
later run would trust, and a damaged file is reported in one line that says what to do."""

import contextlib
import os
import zipfile
from pathlib import Path

import torch

from .errors import UserError

REBUILD = "delete it and rerun the workflow to rebuild it"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint or model file is unreadable; the message says what to delete or rerun."""


class DamagedFileError(UserError, ValueError):
    """A data file the workflow wrote (sample set, reference statistics) is unreadable or holds
    NaN/inf; the message names it and says what to delete or rerun."""


@contextlib.contextmanager
def reading(path, what: str, fix: str = REBUILD):
    """Turn any damage found while reading `path` inside the block into one DamagedFileError line.

    numpy reads an npz lazily: a bad CRC surfaces when an array is taken, so the block must take them."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, DamagedFileError):
            raise
        text = str(err).strip().splitlines()[0][:100] if str(err).strip() else ""
        raise DamagedFileError(f"{path}: {what} is truncated or corrupt ({type(err).__name__}: {text}); {fix}") from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it becomes `path` only if the block finishes.

    The temporary keeps the suffix (model.part.pt, seed0.part.npz) because some writers
    dispatch on it. A process killed inside the block leaves at most the temporary, which the
    next run overwrites; the final name always holds a complete file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.part{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # survive a power cut too, not only a killed process
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(obj, path) -> None:
    """torch.save, all or nothing."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _what_is_wrong(path, err: Exception) -> str:
    # torch.save writes a zip archive; without its end record the file is cut short or not ours,
    # and torch's own error (often a weights_only complaint about pickle opcodes) would mislead.
    if not zipfile.is_zipfile(path):
        return "is truncated or corrupt (not a complete PyTorch zip archive)"
    text = str(err).strip()
    if "Weights only load failed" in text:
        return "holds objects that safe (weights_only) loading refuses (not written by diffrepro?)"
    detail = f"{type(err).__name__}: {text.splitlines()[0][:100]}" if text else type(err).__name__
    return f"is truncated or corrupt ({detail})"


def load_checkpoint(path, what="checkpoint", *, required=(), fix=REBUILD) -> dict:
    """torch.load(weights_only=True) that turns any damage into one CheckpointError line.

    `required`: keys the file must have (a model file is not a training checkpoint);
    `fix`: what the user should do, appended to the message.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{path}: {what} {_what_is_wrong(path, err)}; {fix}") from None
    missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise CheckpointError(f"{path}: {what} lacks {', '.join(missing)} (not a {what} file?); {fix}")
    return obj
