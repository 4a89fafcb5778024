"""The hash that keys a result by everything that determines it (a training or sample spec)."""

import hashlib
import json


def config_hash(spec: dict) -> str:
    """A short, stable hash of everything that determines a result."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def describe_training(spec: dict) -> str:
    """A network in messages: paper/experiment/input scaling and its training spec's hash."""
    return f"{spec['paper']}/{spec['experiment']}/{spec['input_scaling']} config {config_hash(spec)}"
