"""Compose a paper's choices (YAML data) into objects: network, schedule, denoiser, loss, grid.

This is the only place where a resolved experiment spec (diffrepro.plan.Plan) meets the
component registries, so a new paper never needs new glue.
"""

import torch

from .datasets import dataset_of
from .denoisers import build_denoiser
from .losses import LOSSES
from .models.unet import UNet
from .scalings import get_scaling
from .schedules import SCHEDULES, DataMultipliedSchedule, build_schedule, edm_sigmas


class OwnNetwork(torch.nn.Module):
    """A user's network (`network: {class: 'module:Class', kwargs}`) called as the denoisers call ours,
    net(x, noise_input); an output object with a .sample tensor (diffusers' models) is unwrapped."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, t):
        out = self.module(x, t)
        return out.sample if hasattr(out, "sample") else out


def build_network(training_spec: dict) -> torch.nn.Module:
    """The network of a training spec: our UNet, its image channels those of its data set (1
    Fashion-MNIST, 3 CIFAR-10), or the user's own class built with its kwargs."""
    if "class" in training_spec["unet"]:
        from .catalog import import_path

        own = training_spec["unet"]
        return OwnNetwork(import_path(own["class"])(**own.get("kwargs", {})))
    cfg = dict(training_spec["unet"])
    cfg["channels"] = tuple(cfg["channels"])
    cfg["attention_levels"] = tuple(cfg.get("attention_levels", ()))
    return UNet(in_channels=dataset_of(training_spec).channels, **cfg)


def with_data_multiplier(schedule, spec: dict):
    """`schedule` in the data space the denoiser sees: Chen's data multiplier b
    (parameterisation.data_multiplier) wraps it in DataMultipliedSchedule."""
    b = float(spec["parameterisation"].get("data_multiplier", 1.0))
    return schedule if b == 1.0 else DataMultipliedSchedule(schedule, b)


def build_schedule_for(spec: dict):
    """The schedule of a spec (experiment or training spec) in the denoiser's data space."""
    return with_data_multiplier(build_schedule(spec["schedule"]), spec)


def build_model(training_spec: dict):
    """(network, schedule, denoiser) of a training spec; the schedule is in the denoiser's data space."""
    net = build_network(training_spec)
    schedule = build_schedule(training_spec["schedule"])
    denoiser = build_denoiser(net, training_spec["parameterisation"], schedule)
    return net, with_data_multiplier(schedule, training_spec), denoiser


def load_model(model_file: dict):
    """(schedule, denoiser in eval mode) of a trained model file written by the train stage."""
    _, schedule, denoiser = build_model(model_file["spec"])
    denoiser.load_state_dict(model_file["state_dict"])
    return schedule, denoiser.eval()


def build_loss(training_spec: dict):
    cfg = dict(training_spec["loss"])
    loss = LOSSES[cfg.pop("name")]
    return lambda denoiser, x0, sigma, noise: loss(denoiser, x0, sigma, noise, **cfg)


def round_to_levels(sigmas: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Each nonzero sigma replaced by the nearest of a discrete network's own levels: EDM's
    sampler on a discrete-time (iDDPM-style) network steps between the levels it was trained on
    (Karras 2022, Table 1 and App. C.3.4)."""
    levels = levels.to(sigmas.dtype)
    nearest = levels[(sigmas[:, None] - levels[None, :]).abs().argmin(1)]
    return torch.where(sigmas > 0, nearest, sigmas)


def inference_schedule(schedule, config: dict):
    """A schedule used only to place the sampling grid (Chen 2023 samples every model on a cosine
    grid whatever it was trained with), seen in the same data multiplier as `schedule`."""
    inner = build_schedule(config)
    b = getattr(schedule, "data_multiplier", 1.0)
    return inner if b == 1.0 else DataMultipliedSchedule(inner, b)


def sampling_sigmas(schedule, steps: int, grid: dict) -> torch.Tensor:
    """The decreasing sigma grid (ending in 0) a sampler runs on.

    Default: the schedule's own grid. spacing=edm: EDM's rho-ramp (Karras 2022 eq. 5), which
    lets EDM's samplers run on any model; its range defaults to the schedule's where it has one;
    round_to_levels snaps it to a discrete schedule's levels. `schedule:` places the grid by
    another schedule (an inference schedule) instead of the training one.
    """
    spacing = grid.get("spacing")
    placing = inference_schedule(schedule, grid["schedule"]) if "schedule" in grid else schedule
    levels = getattr(schedule, "sigmas", None)
    if spacing == "edm":
        lo = float(levels.min()) if levels is not None else 0.002
        hi = float(levels.max()) if levels is not None else 80.0
        sigmas = edm_sigmas(steps, grid.get("sigma_min", max(lo, 0.002)), grid.get("sigma_max", min(hi, 80.0)),
                            grid.get("rho", 7.0))
    elif spacing in (None, "linear_t"):
        sigmas = placing.sampling_sigmas(steps)
    else:
        sigmas = placing.sampling_sigmas(steps, spacing=spacing)
    if grid.get("round_to_levels"):
        if levels is None:
            raise ValueError("grid.round_to_levels needs a discrete-time schedule (one with sigma levels)")
        sigmas = round_to_levels(sigmas, levels)
    return sigmas


def sampler_options(sampler_spec: dict, scaling_name: str) -> dict:
    """YAML sampler options → keyword arguments; clip_x0: true clips x0_hat to the data range,
    false turns clipping off (absent keeps the sampler's own default)."""
    options = dict(sampler_spec.get("options", {}))
    if "clip_x0" in options:
        scaling = get_scaling(scaling_name)
        data_range = (float(scaling.to_model(0.0)), float(scaling.to_model(1.0)))
        options["clip_x0"] = data_range if options["clip_x0"] else None
    return options


__all__ = ["build_network", "build_model", "load_model", "build_loss", "sampling_sigmas", "sampler_options", "SCHEDULES"]
