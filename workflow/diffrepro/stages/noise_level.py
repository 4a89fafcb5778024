"""Stage: train the t-free sampler's noise-level predictor; write it and its test-set MSE rows.

Called by replications/tfree_fastai.smk. The predictor sees images in the input scaling of the
models it serves (the spec's input_scaling), exactly as samplers.tfree_ddim hands them over.
"""

import json
import time
from pathlib import Path

import pandas as pd
import torch

from ..spec_hash import config_hash
from ..data import load_split
from ..io import atomic_path
from ..metrics_table import rows_for
from ..noise_level import evaluate_noise_level_predictor, predicted_vs_true, save_noise_level_predictor, train_noise_level_predictor
from ..scalings import get_scaling
from . import parse_stage_args, run_stage, stage_parser

TEST_SPLIT_SIZE = 10_000
PLOTTED_PREDICTIONS = 2000


def scaled_split(data, split, spec, limit):
    images, _ = load_split(data, split, spec["resolution"], limit)
    return torch.from_numpy(get_scaling(spec["input_scaling"]).to_model(images))


def metric_rows(spec: dict, scores: dict, n_eval: int) -> pd.DataFrame:
    """metrics_table rows: one per score; the run is the predictor (experiment = its name)."""
    reference = "fashion_mnist_test_10k" if n_eval == TEST_SPLIT_SIZE else f"fashion_mnist_test_first_{n_eval}"
    run = {"paper": spec["paper"], "experiment": spec["name"], "input_scaling": spec["input_scaling"],
           "sampler": "none", "sampler_name": "none", "steps": 0, "nfe": 0, "seed": spec["seed"],
           "n_samples": n_eval, "extractor": "none", "library": "diffrepro", "reference_set": reference,
           "config_hash": config_hash(spec)}
    return rows_for(run, [{"metric": name, "value": value} for name, value in scores.items()])


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--spec", required=True, help="predictor settings (JSON): paper, name, input_scaling, "
                   "resolution, train_limit, width, steps, batch_size, lr, warmup, grad_clip, seed, eval_images")
    p.add_argument("--data", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--losses", required=True)
    p.add_argument("--predictions", default=None, help="csv: true vs predicted abar on 2000 test images")
    p.add_argument("--checkpoint", default=None)
    args = parse_stage_args(p, argv)
    spec = json.loads(args.spec)

    train_images = scaled_split(args.data, "train", spec, spec["train_limit"])
    t0 = time.perf_counter()
    predictor, log = train_noise_level_predictor(
        train_images, spec, checkpoint_path=Path(args.checkpoint) if args.checkpoint else None,
        describe=f"{spec['paper']}/{spec['name']} noise-level predictor config {config_hash(spec)}")
    seconds = time.perf_counter() - t0
    test_images = scaled_split(args.data, "test", spec, spec["eval_images"])
    scores = evaluate_noise_level_predictor(predictor, test_images, seed=spec["seed"])

    if args.predictions:
        pairs = predicted_vs_true(predictor, test_images[:PLOTTED_PREDICTIONS], seed=spec["seed"] + 1)
        with atomic_path(args.predictions) as tmp:
            pd.DataFrame(pairs).to_csv(tmp, index=False)
    with atomic_path(args.losses) as tmp:
        pd.DataFrame(log).to_csv(tmp, index=False)
    with atomic_path(args.metrics) as tmp:
        metric_rows(spec, scores, len(test_images)).to_csv(tmp, index=False)
    save_noise_level_predictor(predictor, args.out, {"spec": json.dumps(spec, sort_keys=True),
                                                     "config_hash": config_hash(spec),
                                                     "train_seconds": seconds, **scores})
    if args.checkpoint and Path(args.checkpoint).exists():
        Path(args.checkpoint).unlink()


def figure(predictions_file, out, title="") -> None:
    """The report's figure of this stage (registered in replications/tfree_fastai.smk): the predicted
    against the true alpha-bar of each test image."""
    import matplotlib.pyplot as plt

    from .. import figures

    pairs = pd.read_csv(predictions_file)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.scatter(pairs["alpha_bar"], pairs["alpha_bar_predicted"], s=3, alpha=0.35)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set(xlabel="true ᾱ", ylabel="predicted ᾱ", title=title, xlim=(0, 1), ylim=(0, 1), aspect="equal")
    figures.save(fig, out)


if __name__ == "__main__":
    run_stage(main)
