"""Stage: Sohl-Dickstein 2015's swiss roll. Train the T-step chain with learned mean and variance,
and its forward schedule, on the variational bound; report the bound K on held-out points in bits
per example, the learned betas, and samples of the chain for a plot. Called by
replications/sohl_dickstein_2015.smk.

K is the paper's Table 1 quantity: a lower bound on the log likelihood of held-out 2-D points
(bits per point, summed over both coordinates; higher is better), with the data scaled by one
constant to unit variance. Our bound's last step is the model's learned Gaussian decoder
p(x0 | x1) (losses.bits_per_dim_bound with decoder 'gaussian'); the paper instead fixed that step
to the forward kernel run backwards (its App. B.2), which caps its K (edge_ceiling_bits, reported
for the learned schedule as bound_bits_edge_ceiling).

Forward schedule (Sec. 2.4.1): beta_2..beta_T are learned with the network by the same optimiser
(toy.LearnedBetas, starting from the authors' fixed schedule); beta_1 is fixed (learned, it would
shrink without end on data this thin: the learned beta_2 ends below beta_1). We fix it at 1e-5, not
at the 1e-3 of the authors' (image) code: in the paper's bound form, whose last step is the forward
kernel run backwards, K <= -H(x1), minus the entropy of the data after the first forward step, so
Table 1's 2.35 bits need beta_1 <~ 1.3e-5 on this roll (-H(x1) = -0.72, 0.93, 2.48 bits at 1e-3,
1e-4, 1e-5). In our form (learned diagonal Gaussian decoder) an ideal chain reaches at most 1.16,
2.55, 3.45 bits there (quadrature along the curve). Measured at quick settings (seeds 0, 1, 2):
K = -0.36, -0.69, -0.37 bits (1e-3); 0.31, 0.10, 0.27 (1e-4); 0.57, 0.27 (1e-5).

Data noise: the roll gets isotropic Gaussian noise of std 0.01 raw units (radius 4.7..14.1), i.e.
0.0015 in unit-variance units (the raw data's std is 6.79). Without noise the data lie on a curve
with no density, and the log likelihood that K bounds is infinite. The noisy roll's own log
likelihood (its minus entropy, by quadrature along the curve) caps every model's K: 3.69 bits at
0.01 raw, 2.69 at 0.02, 1.37 at 0.05, 0.37 at 0.1, -1.96 at 0.5; a roll thicker than about 0.025 raw
could not give the paper's 2.35 bits at all. At 0.01 the density is proper and costs little: K at
quick settings (seed 0) is 0.64, 0.57, 0.40 bits at noise 0, 0.01, 0.02 raw.
"""

import argparse
import json
import math
import sys
import time

import numpy as np
import pandas as pd
import torch

from ..spec_hash import config_hash
from ..io import atomic_path
from ..losses import bits_per_dim_bound, vlb_loss
from ..metrics_table import COLUMNS
from ..schedules import build_schedule
from ..toy import (LearnedBetas, LearnedScheduleChain, SwissRollNet, chain_samples,
                   isotropic_gaussian_log2_likelihood, standardise, swiss_roll, mean_and_std)
from ..training import TrainingDiverged, lr_at, seed_everything
from . import run_stage

DIMS = 2


def make_data(data_cfg):
    """(train, held-out) float32 [n, 2], both standardised with the training set's mean and std."""
    seed = data_cfg.get("seed", 0)
    train_points = swiss_roll(data_cfg["n_train"], data_cfg["noise"], torch.Generator().manual_seed(seed))
    test_points = swiss_roll(data_cfg["n_test"], data_cfg["noise"], torch.Generator().manual_seed(seed + 1))
    mean, std = mean_and_std(train_points)
    return standardise(train_points, mean, std).float(), standardise(test_points, mean, std).float()


def build_chain(settings):
    """The LearnedScheduleChain of a swiss-roll settings dict: `schedule` is the baseline the betas
    start from (the authors' fixed sohl_dickstein schedule), `learned_betas` fixes beta_1 and says
    whether beta_2..beta_T are learned (Sohl-Dickstein 2015 Sec. 2.4.1)."""
    baseline = build_schedule(settings["schedule"])
    opts = dict(settings["learned_betas"])
    learn = opts.pop("learn")
    schedule = LearnedBetas(baseline.betas[1:], **opts)
    schedule.coefficients.requires_grad_(learn)
    seed_everything(settings["train"]["seed"])  # the RBF centres' init is part of the result
    net = SwissRollNet(baseline.T, dims=DIMS, **settings["network"])
    return LearnedScheduleChain(net, schedule)


def stratified_levels(n, T, generator):
    """n level indices in 0..T-1, each uniform, that together visit every level n // T or n // T + 1
    times. After training the level-0 (decoder) term of the bound is several bits per dimension
    (-3.5 at beta_1 = 1e-3, -6 at 1e-5) and a KL term about 0.1, so with independent draws the number
    of decoder terms in a batch of 512 (sd 3.5) alone makes the loss swing by one to two bits per
    dimension; with the counts fixed the estimate stays unbiased and that swing is gone."""
    offset = torch.randint(0, T, (1,), generator=generator)
    return (offset + torch.arange(n)) % T


def train_chain(chain, points, cfg, progress=False):
    """Fit the network and the learned betas together by Adam on the bound K (losses.vlb_loss with
    the Gaussian decoder: one level per example, stratified over the batch, weighted T). Returns the
    losses.

    The shared training.train draws noise levels from a fixed schedule object; here the levels are
    the chain's own current ones, so the forward draw of x_t moves with (and differentiates into)
    the learned betas. One generator gives the data order, levels and noise: runs are repeatable.
    Linear warmup then cosine decay (training.lr_at), gradient-norm clipping.
    """
    generator = torch.Generator().manual_seed(cfg["seed"])
    params = [p for p in chain.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    steps, batch, n = cfg["steps"], cfg["batch_size"], len(points)
    order, cursor, losses = None, n, []
    for step in range(steps):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        x0 = points[order[cursor:cursor + batch]]
        cursor += batch
        level = stratified_levels(len(x0), chain.num_steps, generator)
        noise = torch.randn(x0.shape, generator=generator)
        with chain.pinned_levels() as levels:
            # vlb_loss maps sigma back to its level and draws x_t from the chain's (learned) levels
            loss = vlb_loss(chain, x0, levels.level_sigmas[level].detach().to(x0.dtype), noise, decoder="gaussian")
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"swiss roll training diverged at step {step + 1}: loss {loss.item()}; "
                                   f"lower train.lr (now {cfg['lr']:g})")
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, cfg["lr"], cfg.get("warmup", 0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        opt.step()
        losses.append(loss.item())
        if progress and (step + 1) % max(1, steps // 20) == 0:
            print(f"step {step + 1}/{steps}: bound {sum(losses[-100:]) / len(losses[-100:]):.4f} bits/dim",
                  file=sys.stderr)
    return losses


@torch.no_grad()
def bound_bits(chain, points, repeats=1, generator=None):
    """K per example [N] in bits: minus the bound on -log p(x0), summed over the 2 coordinates,
    averaged over `repeats` independent draws of the forward trajectory."""
    with chain.pinned_levels():
        draws = [bits_per_dim_bound(chain, points, generator=generator, decoder="gaussian") for _ in range(repeats)]
    return -DIMS * torch.stack(draws).mean(0).double()


def edge_ceiling_bits(betas, dims=DIMS):
    """The largest K the paper's bound form allows on unit-variance data: Sohl-Dickstein 2015 eq. 14
    with every KL term 0, K = H_q(X^T|X^0) - H_q(X^1|X^0) - H_p(X^T), in bits per example. The
    stage reports it for the learned schedule (row bound_bits_edge_ceiling); our bound learns the
    last step, so it is a reference there, not a hard cap.

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


def schedule_values(betas):
    """Metric rows that describe a (learned) forward schedule betas [T]."""
    return {"beta_1": betas[0], "beta_2": betas[1], "beta_T": betas[-1],
            "alpha_bar_T": torch.prod(1 - betas)}  # how much of x0 survives to the prior N(0, I)


def run(settings, progress=False):
    """Train and evaluate; returns (metric rows, samples [n, 2], held-out points [n, 2], betas [T], info)."""
    train_points, test_points = make_data(settings["data"])
    chain = build_chain(settings)
    t0 = time.perf_counter()
    losses = train_chain(chain, train_points, settings["train"], progress=progress)
    chain.eval()
    seconds = time.perf_counter() - t0
    if not chain.levels_resolvable():
        raise TrainingDiverged("two learned noise levels coincide in float32; raise learned_betas.min_beta")
    with torch.no_grad():
        betas = chain.schedule().detach()

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
        "bound_bits_edge_ceiling": edge_ceiling_bits(betas),  # of the learned schedule
        **schedule_values(betas),
    }
    with chain.pinned_levels():
        samples = chain_samples(chain, evaluation["n_plot_samples"], DIMS, g)
    info = {"train_seconds": seconds, "K_bits": float(k.mean()), "final_train_loss_bits_per_dim": losses[-1],
            "non_finite_samples": int((~samples.isfinite()).sum())}
    return metric_rows(settings, values, len(test_points)), samples, test_points[: len(samples)], betas, info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--settings", required=True, help="the scale's swiss_roll settings plus 'paper' (JSON)")
    p.add_argument("--metrics", required=True, help="metrics CSV (the results contract's columns)")
    p.add_argument("--samples", required=True, help="npz: samples and held-out points [n, 2], the learned betas [T]")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    settings = json.loads(args.settings)
    rows, samples, heldout, betas, info = run(settings)
    if not all(math.isfinite(r["value"]) for r in rows):
        raise SystemExit(f"error: a swiss-roll metric is not finite: {rows}")
    with atomic_path(args.metrics) as tmp:
        pd.DataFrame(rows)[COLUMNS].to_csv(tmp, index=False)
    meta = {**info, "settings": settings, "config_hash": config_hash(settings), "frame": "unit_variance"}
    with atomic_path(args.samples) as tmp:
        np.savez(tmp, samples=samples.numpy().astype(np.float32), heldout=heldout.numpy(), betas=betas.numpy(),
                 meta=json.dumps(meta))
    print(json.dumps(info), file=sys.stderr)


def figure(samples_file, out, title="") -> None:
    """The report's figure of this stage (registered in replications/sohl_dickstein_2015.smk): held-out
    points and model samples side by side."""
    import matplotlib.pyplot as plt

    from .. import figures

    data = np.load(samples_file)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5), sharex=True, sharey=True)
    for ax, points, name in zip(axes, (data["heldout"], data["samples"]), ("held-out data", "model samples")):
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        ax.set(title=name, aspect="equal")
    fig.suptitle(title)
    figures.save(fig, out)


if __name__ == "__main__":
    run_stage(main)
