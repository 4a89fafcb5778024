"""Stage: FID against training images seen, for one network's EMA snapshots and its final weights.

The train stage keeps the snapshots in the model file when the experiment asks for a learning
curve (`learning_curve:` in its replication YAML). Each is sampled with one sampler and scored as
the evaluate stage scores a sample set (clean-fid on the classifier features, with the bootstrap
interval), so the last point equals the evaluate stage's row for that set.
"""

import json

import pandas as pd

from ..data import resample
from ..features import FMNIST_CLASSIFIER, Extractor
from ..io import atomic_path, load_checkpoint
from ..sampling import draw_samples
from .evaluate import score_set
from . import parse_stage_args, run_stage, stage_parser

def weights_by_images_seen(model_file: dict) -> dict:
    """{training images seen: state dict}: the snapshots, then the final (EMA) weights."""
    train = model_file["spec"]["train"]
    final = train["steps"] * train["batch_size"]
    return {**model_file.get("snapshots", {}), final: model_file["state_dict"]}


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--model", required=True, help="model file written by the train stage, with snapshots")
    p.add_argument("--spec", required=True, help="sample spec (JSON) every snapshot is sampled with")
    p.add_argument("--classifier", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--fid", required=True, help="FID settings (JSON): kid_subset_size, kid_subsets")
    p.add_argument("--resolution", type=int, default=32, help="the reference's resolution (samples are resized to it)")
    args = parse_stage_args(p, argv)
    spec, fid = json.loads(args.spec), json.loads(args.fid)
    model_file = load_checkpoint(args.model, "trained model", required=("spec", "state_dict"))
    if not model_file.get("snapshots"):
        raise SystemExit(f"error: {args.model} holds no training snapshots; its experiment has no learning_curve "
                         "or it was trained before it had one (delete it and rerun)")
    extractor = Extractor(FMNIST_CLASSIFIER, args.classifier)
    rows = []
    for seen, state in sorted(weights_by_images_seen(model_file).items()):
        images, info = draw_samples({**model_file, "state_dict": state}, spec, progress=False)
        images = resample(images, args.resolution)
        scores, _ = score_set(images, args.reference, extractor, fid, spec["seed"],
                              f"{args.model} at {seen} training images", libraries=("clean-fid",))
        value = {(r["library"], r["metric"]): r["value"] for r in scores}
        rows.append({**spec["run"], "sampler": spec["sampler"]["label"], "steps": spec["sampler"]["steps"],
                     "nfe": info["nfe"], "seed": spec["seed"], "n_samples": len(images), "images_seen": seen,
                     "fid": value[("clean-fid", "fid")], "fid_ci_low": value[("diffrepro", "fid_ci_low")],
                     "fid_ci_high": value[("diffrepro", "fid_ci_high")]})
        print(f"FID {rows[-1]['fid']:.3g} after {seen} training images ({args.model})", flush=True)
    with atomic_path(args.out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


if __name__ == "__main__":
    run_stage(main)
