"""Where and how fast a network runs: device, bf16 autocast, TF32, channels_last, torch.compile.

A scale's `performance:` block (workflow/config.yaml) holds these settings; plan.Plan copies
the ones that differ from the defaults into the training and sample specs, so the defaults
(CPU or the visible GPU in float32, nothing else) leave every existing result's spec as it was.

None of these settings touch random numbers: noise is always drawn from CPU generators and then
moved, so a result depends on its seeds, not on the device or on how a sample set is sharded.
"""

import contextlib
from dataclasses import dataclass

import torch

from .config import PERFORMANCE_DEFAULTS
from .errors import UserError


class DeviceUnavailable(UserError, RuntimeError):
    """The configured device does not exist here (e.g. `device: cuda` on a machine without a GPU)."""


@dataclass(frozen=True)
class Performance:
    device: str = PERFORMANCE_DEFAULTS["device"]
    bf16: bool = PERFORMANCE_DEFAULTS["bf16"]
    tf32: bool = PERFORMANCE_DEFAULTS["tf32"]
    channels_last: bool = PERFORMANCE_DEFAULTS["channels_last"]
    compile: bool = PERFORMANCE_DEFAULTS["compile"]

    @classmethod
    def of_spec(cls, spec: dict) -> "Performance":
        """The settings of a training or sample spec (absent keys: the defaults)."""
        return cls(**spec.get("performance", {}))


def resolve_device(name: str) -> torch.device:
    """auto: the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("performance.device is cuda but torch sees no CUDA device here; "
                                "set it to auto or cpu, or run the job on a GPU node")
    return torch.device(name)


def configure_backends(performance: Performance, device: torch.device) -> None:
    # Set both flags either way: PyTorch's own defaults differ (cuDNN convolutions allow TF32,
    # matmuls do not), and `tf32: false` should mean float32 everywhere.
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = performance.tf32
        torch.backends.cudnn.allow_tf32 = performance.tf32
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels once


def memory_format(performance: Performance) -> torch.memory_format:
    return torch.channels_last if performance.channels_last else torch.contiguous_format


def place_module(module: torch.nn.Module, performance: Performance, device: torch.device) -> torch.nn.Module:
    """Move `module` (in place) to `device` and the configured memory format of its 4-D weights."""
    if performance.channels_last:
        return module.to(device=device, memory_format=torch.channels_last)
    return module.to(device)


def place_batch(x: torch.Tensor, performance: Performance, device: torch.device) -> torch.Tensor:
    """An input batch on `device`; image batches in the network's memory format. A no-op
    (the same tensor) on the CPU with the defaults."""
    if performance.channels_last and x.ndim == 4:
        return x.to(device=device, memory_format=torch.channels_last)
    return x.to(device)


def compile_module(module: torch.nn.Module, performance: Performance) -> torch.nn.Module:
    # nn.Module.compile() compiles in place: parameter names, state_dict and isinstance checks
    # (the variational-bound losses need the DiscreteChain) stay those of the module.
    if performance.compile:
        module.compile()
    return module


def autocast(performance: Performance, device: torch.device):
    """bf16 autocast on `device` when configured, else a context that changes nothing."""
    if not performance.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def in_autocast(fn, performance: Performance, device: torch.device):
    """`fn(x, ...)` run under autocast, its output returned in x's dtype.

    For samplers: only the network runs in bf16; their updates of x stay in float32 (an x0
    prediction would otherwise come back in bf16 and round every step's state).
    """
    if not performance.bf16:
        return fn

    def call(x, *args):
        with autocast(performance, device):
            out = fn(x, *args)
        return out.to(x.dtype)

    return call
