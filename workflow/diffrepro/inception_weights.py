"""Where the Inception-v3 FID weights are: the configured path, else torch hub's cache.

Torch-free, because the Snakefile asks at parse time: a scale whose experiments are scored with
Inception features must not start without them. Nothing here downloads.
"""

import os
from pathlib import Path

# The TensorFlow FID Inception (2015-12-05) converted to PyTorch by pytorch-fid. clean-fid's
# inception_pytorch asks torch hub for it under FILE_NAME; torch-fidelity's inception-v3-compat
# loads the same state dict, shipped as TORCH_FIDELITY_FILE_NAME (6726825d: the start of the file's
# SHA-256, torch hub's naming).
FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE_NAME = "weights-inception-2015-12-05-6726825d.pth"
CONFIG_KEY = "inception_weights"


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
