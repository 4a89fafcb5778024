"""Draw samples from a trained model with any sampler; shard-invariant by construction."""

import time

import numpy as np
import torch

from .build import load_model, sampler_options, sampling_sigmas
from .samplers import SAMPLERS, nfe
from .scalings import get_scaling


def load_aux(option: str, path):
    """An auxiliary network as the callable a sampler option expects."""
    if option == "noise_level_predictor":
        from .noise_level import load_noise_level_predictor

        return load_noise_level_predictor(path)
    raise ValueError(f"no loader for sampler option {option!r}")


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    # One generator per (seed, batch): the images of batch k never depend on which job drew
    # batches 0..k-1, so sample sets can be sharded over jobs and merged.
    return torch.Generator().manual_seed(seed * 1_000_003 + batch_index)


@torch.no_grad()
def draw_samples(model_file: dict, sample_spec: dict, progress=True, batches=None, aux=None):
    """(images in [0,1] float32 [N,C,H,W], info dict) for one sampler/steps/seed.

    `batches`: indices of the batches to draw (default: all). Batch k holds images
    k*batch_size onwards whoever draws it, so shards concatenated in order equal the full set.
    `aux`: paths of auxiliary networks by sampler option (config.AUX_OPTIONS).
    """
    training = model_file["spec"]
    schedule, denoiser = load_model(model_file)
    sampler = sample_spec["sampler"]
    sigmas = sampling_sigmas(schedule, sampler["steps"], sampler["grid"]).float()
    options = sampler_options(sampler, training["input_scaling"])
    for key, path in (aux or {}).items():
        options[key] = load_aux(key, path)
    scaling = get_scaling(training["input_scaling"])
    n, bs, res = sample_spec["n_samples"], sample_spec["batch_size"], training["resolution"]
    out, t0 = [], time.perf_counter()
    for k in (range(-(-n // bs)) if batches is None else batches):
        g, start = batch_generator(sample_spec["seed"], k), k * bs
        size = min(bs, n - start)
        x = torch.randn(size, 1, res, res, generator=g) * sigmas[0]
        x0 = SAMPLERS[sampler["name"]](denoiser, x, sigmas, generator=g, progress=progress, **options)
        out.append(scaling.to_image(x0))
    images = torch.cat(out).numpy().astype(np.float32)
    info = {"nfe": nfe(sampler["name"], sigmas, **options), "seconds": time.perf_counter() - t0,
            "out_of_range_fraction": float(((images < 0) | (images > 1)).mean()),
            "non_finite": int((~np.isfinite(images)).sum())}
    return np.clip(images, 0.0, 1.0), info
