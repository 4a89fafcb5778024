"""Stage: Sohl-Dickstein 2015's swiss roll. Train the T-step chain with learned mean and variance
on the variational bound, report the bound K on held-out points in bits per example, and save
samples of the chain for a plot. Called by replications/sohl_dickstein_2015.smk.

K is the paper's Table 1 quantity: a lower bound on the log likelihood of held-out 2-D points
(bits per point, summed over both coordinates; higher is better), with the data scaled by one
constant to unit variance. Our bound's last step is the model's learned Gaussian decoder
p(x0 | x1) (losses.bits_per_dim_bound with decoder 'gaussian'); the paper instead fixed that step
to the forward kernel run backwards (its App. B.2), which caps its K (see edge_ceiling_bits).
"""

import argparse
import json
import math
import sys
import time

import numpy as np
import pandas as pd
import torch

from ..config import config_hash
from ..denoisers import build_denoiser
from ..io import atomic_path
from ..losses import bits_per_dim_bound, vlb_loss
from ..metrics_table import COLUMNS
from ..schedules import build_schedule
from ..toy import (chain_samples, isotropic_gaussian_log2_likelihood, standardise, swiss_roll,
                   unit_variance_scaling, SwissRollNet)
from ..training import seed_everything, train
from . import run_stage

DIMS = 2


def make_data(data_cfg):
    """(train, held-out) float32 [n, 2], both standardised with the training set's mean and scale."""
    seed = data_cfg.get("seed", 0)
    train_points = swiss_roll(data_cfg["n_train"], data_cfg["noise"], torch.Generator().manual_seed(seed))
    test_points = swiss_roll(data_cfg["n_test"], data_cfg["noise"], torch.Generator().manual_seed(seed + 1))
    mean, scale = unit_variance_scaling(train_points)
    return standardise(train_points, mean, scale).float(), standardise(test_points, mean, scale).float()


def build_chain(settings):
    """(schedule, SohlDickstein chain) for a swiss-roll settings dict."""
    schedule = build_schedule(settings["schedule"])
    seed_everything(settings["train"]["seed"])  # the RBF centres' init is part of the result
    net = SwissRollNet(schedule.T, dims=DIMS, **settings["network"])
    return schedule, build_denoiser(net, {"name": "sohl_dickstein"}, schedule)


def gaussian_vlb(denoiser, x0, sigma, noise):
    return vlb_loss(denoiser, x0, sigma, noise, decoder="gaussian")


@torch.no_grad()
def bound_bits(chain, points, repeats=1, generator=None):
    """K per example [N] in bits: minus the bound on -log p(x0), summed over the 2 coordinates,
    averaged over `repeats` independent draws of the forward trajectory."""
    draws = [bits_per_dim_bound(chain, points, generator=generator, decoder="gaussian") for _ in range(repeats)]
    return -DIMS * torch.stack(draws).mean(0).double()


def edge_ceiling_bits(betas, dims=DIMS):
    """The largest K the paper's bound form allows on unit-variance data: Sohl-Dickstein 2015 eq. 14
    with every KL term 0, K = H_q(X^T|X^0) - H_q(X^1|X^0) - H_p(X^T), in bits per example.

    H_q(X^T|X^0) = D/2 ln(2 pi e (1 - abar_T)), H_q(X^1|X^0) = D/2 ln(2 pi e beta_1), H_p = D/2 ln(2 pi e).
    """
    betas = torch.as_tensor(betas, dtype=torch.float64)
    alpha_bar_T = torch.prod(1 - betas)
    nats = dims / 2 * (torch.log1p(-alpha_bar_T) - betas[0].log() - math.log(2 * math.pi * math.e))
    return float(nats / math.log(2))


def metric_rows(settings, values: dict, n_test: int) -> list:
    run = {"paper": settings["paper"], "experiment": settings.get("experiment", "swiss_roll"),
           "input_scaling": "unit_variance", "sampler": "none", "sampler_name": "none", "steps": 0, "nfe": 0,
           "seed": settings["train"]["seed"], "n_samples": n_test, "extractor": "none", "library": "diffrepro",
           "reference_set": "swiss_roll_heldout", "config_hash": config_hash(settings)}
    return [{**run, "metric": metric, "value": float(value)} for metric, value in values.items()]


def run(settings, progress=False):
    """Train and evaluate; returns (metric rows, samples [n, 2], held-out points [n, 2], info)."""
    train_points, test_points = make_data(settings["data"])
    schedule, chain = build_chain(settings)
    t0 = time.perf_counter()
    state, _ = train(chain, schedule, gaussian_vlb, train_points, settings["train"], progress=progress,
                     describe=f"{settings['paper']}/swiss_roll")
    chain.load_state_dict(state)
    chain.eval()
    seconds = time.perf_counter() - t0

    evaluation = settings["eval"]
    g = torch.Generator().manual_seed(evaluation.get("seed", 0))
    k = bound_bits(chain, test_points, evaluation["repeats"], g)
    k_train = bound_bits(chain, train_points[: len(test_points)], evaluation["repeats"], g)
    null = isotropic_gaussian_log2_likelihood(test_points.double())
    values = {
        "bound_bits": k.mean(),  # Table 1's K
        "bound_bits_se": k.std() / math.sqrt(len(k)),
        "bound_bits_train": k_train.mean(),
        "null_log_likelihood_bits": null.mean(),  # L_null: log2 N(x; 0, I)
        "bound_minus_null_bits": (k - null).mean(),  # Table 1's K - L_null
        "bound_bits_edge_ceiling": edge_ceiling_bits(schedule.betas),
    }
    samples = chain_samples(chain, evaluation["n_plot_samples"], DIMS, g)
    info = {"train_seconds": seconds, "K_bits": float(k.mean()), "non_finite_samples": int((~samples.isfinite()).sum())}
    return metric_rows(settings, values, len(test_points)), samples, test_points[: len(samples)], info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--settings", required=True, help="the scale's swiss_roll settings plus 'paper' (JSON)")
    p.add_argument("--metrics", required=True, help="metrics CSV (the results contract's columns)")
    p.add_argument("--samples", required=True, help="npz: samples and held-out points, [n, 2] each")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    settings = json.loads(args.settings)
    rows, samples, heldout, info = run(settings)
    if not all(math.isfinite(r["value"]) for r in rows):
        raise SystemExit(f"error: a swiss-roll metric is not finite: {rows}")
    with atomic_path(args.metrics) as tmp:
        pd.DataFrame(rows)[COLUMNS].to_csv(tmp, index=False)
    meta = {**info, "settings": settings, "config_hash": config_hash(settings), "frame": "unit_variance"}
    with atomic_path(args.samples) as tmp:
        np.savez(tmp, samples=samples.numpy().astype(np.float32), heldout=heldout.numpy(), meta=json.dumps(meta))
    print(json.dumps(info), file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
