"""Draw samples from a trained model with any sampler; shard-invariant by construction.

Every random number comes from a CPU generator per (seed, batch) and is moved to the device the
network runs on (the sample spec's `performance`), so a sample set is the same whether it is
drawn on a CPU or a GPU (up to the network's arithmetic) and however it is split into shards.
"""

import time

import numpy as np
import torch

from .build import load_model, sampler_options, sampling_sigmas
from .spec_hash import describe_training
from .datasets import dataset_of
from .errors import UserError
from .performance import (Performance, compile_module, configure_backends, in_autocast, place_batch, place_module,
                          resolve_device)
from .samplers import CountedDenoiser, sampler_function
from .scalings import get_scaling
from .training import TrainingDiverged, weight_blowup


def load_aux(option: str, path, device="cpu"):
    """An auxiliary network as the callable a sampler option expects."""
    if option == "noise_level_predictor":
        from .noise_level import load_noise_level_predictor

        return load_noise_level_predictor(path, device)
    raise ValueError(f"no loader for sampler option {option!r}")


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    # One generator per (seed, batch): the images of batch k never depend on which job drew
    # batches 0..k-1, so sample sets can be sharded over jobs and merged.
    return torch.Generator().manual_seed(seed * 1_000_003 + batch_index)


def n_batches(n_samples: int, batch_size: int) -> int:
    return -(-n_samples // batch_size)


def shard_batches(n_samples: int, batch_size: int, shard: int, shards: int) -> range:
    """The batches shard `shard` of `shards` draws: consecutive, and as even as whole batches allow.

    Shards in order cover batches 0, 1, ... once each, so their images concatenated in shard
    order are the unsharded set (batch k is seeded by k alone, see batch_generator).
    """
    total = n_batches(n_samples, batch_size)
    if not (0 <= shard < shards <= total):
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards <= {total} (the number of batches)")
    return range(shard * total // shards, (shard + 1) * total // shards)


class SamplingDiverged(UserError, RuntimeError):
    """A sample batch came out with NaN or inf pixels."""


@torch.no_grad()
def draw_samples(model_file: dict, sample_spec: dict, progress=True, batches=None, aux=None):
    """(images in [0,1] float32 [N,C,H,W], info dict) for one sampler/steps/seed.

    `batches`: indices of the batches to draw (default: all). Batch k holds images
    k*batch_size onwards whoever draws it, so shards concatenated in order equal the full set.
    `aux`: paths of auxiliary networks by sampler option (plan.AUX_OPTIONS).
    """
    training = model_file["spec"]
    performance = Performance.of_spec(sample_spec)
    device = resolve_device(performance.device)
    configure_backends(performance, device)
    schedule, denoiser = load_model(model_file)
    peak_weight = weight_blowup(denoiser.parameters())
    if peak_weight is not None:  # a model file from a run that blew up without a non-finite loss
        raise TrainingDiverged(f"the network's weights reach |w| = {peak_weight:.3g}: its training diverged "
                               f"({describe_training(training)}); delete the model file and retrain with a lower train.lr")
    network = in_autocast(compile_module(place_module(denoiser, performance, device), performance),
                          performance, device)
    sampler = sample_spec["sampler"]
    sigmas = sampling_sigmas(schedule, sampler["steps"], sampler["grid"]).float()
    options = sampler_options(sampler, training["input_scaling"])
    for key, path in (aux or {}).items():
        options[key] = load_aux(key, path, device)
    scaling = get_scaling(training["input_scaling"])
    n, bs, res = sample_spec["n_samples"], sample_spec["batch_size"], training["resolution"]
    channels = dataset_of(training).channels
    out, evaluations, t0 = [], set(), time.perf_counter()
    for k in (range(n_batches(n, bs)) if batches is None else batches):
        g, start = batch_generator(sample_spec["seed"], k), k * bs
        size = min(bs, n - start)
        x = place_batch(torch.randn(size, channels, res, res, generator=g) * sigmas[0], performance, device)
        counted = CountedDenoiser(network)
        x0 = sampler_function(sampler["name"])(counted, x, sigmas, generator=g, progress=progress, **options)
        evaluations.add(counted.calls)
        if not out and not torch.isfinite(x0).all():  # the first batch: stop before drawing the rest
            raise SamplingDiverged(f"{int((~torch.isfinite(x0)).sum())} non-finite pixels in the first batch "
                                   f"(batch {k}) of {sampler['label']} at {sampler['steps']} steps on "
                                   f"{describe_training(training)}; the sampler or the network diverged")
        out.append(scaling.to_image(x0.to("cpu", memory_format=torch.contiguous_format)))
    images = torch.cat(out).numpy().astype(np.float32)
    if len(evaluations) != 1:  # every batch runs the same grid; anything else is a sampler bug
        raise RuntimeError(f"{sampler['label']}: batches made different numbers of network evaluations {evaluations}")
    info = {"nfe": evaluations.pop(), "seconds": time.perf_counter() - t0,
            "out_of_range_fraction": float(((images < 0) | (images > 1)).mean()),
            "non_finite": int((~np.isfinite(images)).sum())}
    return np.clip(images, 0.0, 1.0), info
