"""Stage: DDIM encode -> decode reconstruction error of test images (Song 2021, Sec. 5.4).

With eta = 0 DDIM is an ODE integrator, so running it up the sigma grid encodes an image into
noise and running it down decodes it; the error falls as steps grow (0.014 at S=10 to 1e-4 at
S >= 500 on CIFAR-10 in the paper). Error is the per-pixel MSE with pixels in [0, 1], the
paper's units (in a model's [-1, 1] space the same error reads 4 times larger).
"""

import json

import torch

from ..build import load_model, sampling_sigmas
from ..spec_hash import config_hash
from ..data import load_split
from ..datasets import dataset_of
from ..io import atomic_path, load_checkpoint
from ..metrics_table import rows_for
from ..samplers import ddim
from ..scalings import get_scaling
from . import parse_stage_args, run_stage, stage_parser


@torch.no_grad()
def reconstruction_mse(denoiser, x0, sigmas, to_image=lambda x: x) -> float:
    """Encode x0 from the smallest nonzero level up the grid, decode back down to sigma = 0;
    the MSE of to_image(decoded) against to_image(x0)."""
    up = sigmas[:-1].flip(0)
    noise = ddim(denoiser, x0.clone(), up, eta=0.0)
    decoded = ddim(denoiser, noise, sigmas, eta=0.0)
    return float((to_image(decoded) - to_image(x0)).pow(2).mean())


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--settings", required=True, help="JSON: n_images, steps")
    p.add_argument("--run", required=True, help="JSON: paper, experiment, input_scaling of the rows")
    args = parse_stage_args(p, argv)
    settings, run = json.loads(args.settings), json.loads(args.run)

    model_file = load_checkpoint(args.model, "trained model", required=("spec", "state_dict"))
    training = model_file["spec"]
    schedule, denoiser = load_model(model_file)
    images, _ = load_split(args.data, "test", training["resolution"], settings["n_images"])
    scaling = get_scaling(training["input_scaling"])
    x0 = torch.from_numpy(scaling.to_model(images))
    run = {**run, "sampler": "ddim_eta0_encode_decode", "sampler_name": "ddim", "seed": 0,
           "reference_set": f"{dataset_of(training).name}_test", "config_hash": config_hash(training)}
    rows = [{"steps": steps, "nfe": 2 * steps, "n_samples": settings["n_images"], "extractor": "none",
             "library": "none", "metric": "reconstruction_mse",
             "value": reconstruction_mse(denoiser, x0, sampling_sigmas(schedule, steps, {}).float(),
                                         scaling.to_image)}
            for steps in settings["steps"]]
    table = rows_for(run, rows)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)


if __name__ == "__main__":
    run_stage(main)
