"""Stage: the variational bound on -log p(x0), in bits per dimension, of a trained image model
whose denoiser is a discrete chain (denoisers.DiscreteChain: e.g. Sohl-Dickstein's learned mean
and variance), on n Fashion-MNIST test images. Called by replications/sohl_dickstein_2015.smk.

DDPM's protocol (Ho 2020 §3.3): 8-bit images scaled to [-1, 1], discretised Gaussian decoder,
L_T + sum_t L_{t-1} + L_0 (losses.bits_per_dim_bound). The dimensions are those the model sees:
Fashion-MNIST zero-padded to 32x32, so the 240 padding pixels per image count too.
"""

import json
import math

import pandas as pd
import torch

from ..build import build_model
from ..schema import ConfigError
from ..spec_hash import config_hash
from ..data import load_split
from ..denoisers import DiscreteChain
from ..io import atomic_path, load_checkpoint
from ..losses import bits_per_dim_bound
from ..metrics_table import COLUMNS
from ..scalings import get_scaling
from . import parse_stage_args, run_stage, stage_parser

# the discretised decoder's bins are 2/255 wide on [-1, 1]: only 8-bit images in that range fit it
EIGHT_BIT_SCALING, EIGHT_BIT_RESOLUTION = "symmetric", 32


def check_eight_bit(spec: dict, source: str) -> None:
    if spec["input_scaling"] != EIGHT_BIT_SCALING or spec["resolution"] != EIGHT_BIT_RESOLUTION:
        raise ConfigError(f"{source}: the bits/dim bound needs 8-bit images in [-1, 1] (input scaling "
                          f"{EIGHT_BIT_SCALING!r}, resolution {EIGHT_BIT_RESOLUTION}); this model was trained with "
                          f"{spec['input_scaling']!r} at {spec['resolution']}")


@torch.no_grad()
def image_bound(chain, images, timesteps=None, batch_size=256, seed=0):
    """[per-batch bounds [b] in bits/dim]: each batch draws its own `timesteps` KL levels (None: all T - 1)."""
    g = torch.Generator().manual_seed(seed)
    return [bits_per_dim_bound(chain, images[i:i + batch_size], num_timesteps=timesteps, generator=g,
                               decoder="discretised").double()
            for i in range(0, len(images), batch_size)]


def mean_and_standard_error(batches: list) -> tuple:
    """The images' mean bound and its standard error. The images of a batch share their drawn levels, so
    the error is read from the spread of the batch means (independent draws); with one batch, from the images."""
    bits = torch.cat(batches)
    if len(batches) < 2:
        return bits.mean(), bits.std() / math.sqrt(len(bits))
    means = torch.stack([b.mean() for b in batches])
    return bits.mean(), means.std() / math.sqrt(len(means))


def bound_rows(spec: dict, batches: list, settings: dict, levels: int) -> list:
    # config_hash of the training spec: the same hash as the experiment's FID rows (metrics_table.check_single_config)
    mean, se = mean_and_standard_error(batches)
    run = {"paper": spec["paper"], "experiment": spec["experiment"], "input_scaling": spec["input_scaling"],
           "sampler": "none", "sampler_name": "none", "steps": 0, "nfe": levels, "seed": settings["seed"],
           "n_samples": sum(len(b) for b in batches), "extractor": "none", "library": "diffrepro",
           "reference_set": "fashion_mnist_test", "config_hash": config_hash(spec)}
    values = {"nll_bits_per_dim_bound": mean, "nll_bits_per_dim_bound_se": se}
    return [{**run, "metric": metric, "value": float(value)} for metric, value in values.items()]


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--model", required=True, help="model.pt written by the train stage")
    p.add_argument("--data", required=True, help="Fashion-MNIST npz")
    p.add_argument("--settings", required=True, help="JSON: n_images, timesteps (null = all), batch_size, seed")
    args = parse_stage_args(p, argv)
    settings = json.loads(args.settings)

    model_file = load_checkpoint(args.model, "trained model", required=("spec", "state_dict"))
    spec = model_file["spec"]
    check_eight_bit(spec, args.model)
    _, _, chain = build_model(spec)
    if not isinstance(chain, DiscreteChain):
        raise ConfigError(f"{args.model}: the bound needs a discrete-chain parameterisation (a discrete schedule, "
                          f"no data_multiplier), not {spec['parameterisation']} on {spec['schedule']}")
    chain.load_state_dict(model_file["state_dict"])
    chain.eval()
    images, _ = load_split(args.data, "test", spec["resolution"], settings["n_images"])
    x0 = torch.from_numpy(get_scaling(spec["input_scaling"]).to_model(images))
    batches = image_bound(chain, x0, settings["timesteps"], settings["batch_size"], settings["seed"])
    bad = int(sum((~b.isfinite()).sum() for b in batches))
    if bad:
        raise SystemExit(f"error: the bound of {args.model} is not finite for {bad} images")
    levels = 1 + min(settings["timesteps"] or chain.num_steps - 1, chain.num_steps - 1)  # network calls per image
    with atomic_path(args.out) as tmp:
        pd.DataFrame(bound_rows(spec, batches, settings, levels))[COLUMNS].to_csv(tmp, index=False)


if __name__ == "__main__":
    run_stage(main)
