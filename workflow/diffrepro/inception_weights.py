"""Where the Inception-v3 FID weights are: the configured path, else torch hub's cache.

Torch-free, because the Snakefile asks at parse time: a scale whose experiments are scored with
Inception features must not start without them. Nothing here downloads.
"""

import hashlib
import os
from pathlib import Path

from .errors import UserError

# The TensorFlow FID Inception (2015-12-05) converted to PyTorch by pytorch-fid. clean-fid's
# inception_pytorch asks torch hub for it under FILE_NAME; torch-fidelity's inception-v3-compat
# loads the same state dict, shipped as TORCH_FIDELITY_FILE_NAME (6726825d: the start of the file's
# SHA-256, torch hub's naming).
FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE_NAME = "weights-inception-2015-12-05-6726825d.pth"
CONFIG_KEY = "inception_weights"
# torch-fidelity and torch hub unpickle this file (weights_only=False): a file that is not the real
# one could run code. Its SHA-256 must start with the prefix both libraries' file names carry.
SHA256_PREFIX = "6726825d"


class UntrustedWeightsError(UserError, ValueError):
    """A weights file is not the file its name promises; nothing has opened it."""


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path) -> Path:
    """`path` if its SHA-256 starts with SHA256_PREFIX; else UntrustedWeightsError, one line.

    Reads bytes only: the check runs before torch-fidelity or clean-fid loads the file."""
    path = Path(path)
    digest = sha256(path)
    if not digest.startswith(SHA256_PREFIX):
        raise UntrustedWeightsError(
            f"{path}: SHA-256 {digest[:16]}... does not start with {SHA256_PREFIX}, so it is not {FILE_NAME} "
            f"(the FID Inception-v3 weights); it was not opened, since loading it could run code. Replace it with "
            f"the genuine file (pytorch-fid's release), or point `{CONFIG_KEY}` at one")
    return path


def hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, by default ~/.cache/torch/hub."""
    torch_home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(torch_home)) / "hub"


def candidates(configured=None, hub=None) -> list:
    """The configured file if there is one, else both names in the hub cache's checkpoints folder."""
    if configured:
        return [Path(configured)]
    checkpoints = Path(hub if hub is not None else hub_dir()) / "checkpoints"
    return [checkpoints / FILE_NAME, checkpoints / TORCH_FIDELITY_FILE_NAME]


def find(configured=None, hub=None):
    """The first candidate that is a file, or None."""
    return next((path for path in candidates(configured, hub) if path.is_file()), None)


def missing_message(configured=None, hub=None) -> str:
    looked = " or ".join(str(path) for path in candidates(configured, hub))
    return (f"Inception-v3 FID weights not found (looked for {looked}): put {FILE_NAME} there, or set "
            f"`{CONFIG_KEY}: <path to {FILE_NAME}>` in workflow/config.yaml (or --config {CONFIG_KEY}=<path>)")
