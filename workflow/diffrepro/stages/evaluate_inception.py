"""Stage: FID and KID of one sample set with Inception-v3 features against a data set's training
split (inception_reference), by torch-fidelity and by clean-fid."""

import json

import numpy as np

from ..datasets import dataset_of
from ..features import INCEPTION, Extractor
from ..io import atomic_path
from ..metrics import compute_metrics
from ..metrics_table import rows_for
from ..sample_sets import read_sample_set
from . import parse_stage_args, run_stage, stage_parser
from .evaluate import pixel_rows, run_of, save_features, status_line


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--samples", required=True, help="npz written by the sample stage")
    p.add_argument("--weights", required=True, help="the Inception-v3 weights file the reference was made with")
    p.add_argument("--reference", required=True, help="npz written by the inception_reference stage")
    p.add_argument("--fid", required=True, help="FID settings (JSON): kid_subset_size, kid_subsets")
    p.add_argument("--features", default=None, help="npz to keep the set's (clean-fid) Inception features in")
    args = parse_stage_args(p, argv)
    fid = json.loads(args.fid)

    images, meta = read_sample_set(args.samples)
    run, dataset = run_of(meta), dataset_of(meta["spec"]["training"]).name
    with np.load(args.reference) as reference:
        reference_set, reference_pixels = f"{dataset}_train_{len(reference['pixels'])}", reference["pixels"]
    scored, extractor = {}, Extractor(INCEPTION, args.weights)
    rows = compute_metrics(images, args.reference, extractor,
                           kid_subset_size=min(fid["kid_subset_size"], len(images)), kid_subsets=fid["kid_subsets"],
                           seed=run["seed"], name=args.samples, image_shape=images.shape[1:], features_out=scored)
    # No per-set bootstrap rows here: with 2048-d features each draw costs an eigendecomposition of a
    # 2048 x 2048 matrix (seconds on a CPU), hundreds of draws per set. The features are kept.
    if args.features:
        save_features(args.features, scored["features"], images.shape[1:])
    with atomic_path(args.out) as tmp:
        rows_for({**run, "reference_set": reference_set}, rows + pixel_rows(images, reference_pixels)).to_csv(tmp, index=False)
    print(status_line(run, rows), flush=True)


if __name__ == "__main__":
    run_stage(main)
