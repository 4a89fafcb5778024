"""Stage: FID and KID of one sample set (or of real training images: the floor), by both libraries."""

import json

import numpy as np

from ..spec_hash import config_hash
from ..data import load_split, resample
from ..features import FMNIST_CLASSIFIER, Extractor, quantize_to_uint8
from ..metrics import compute_metrics
from ..metrics_table import PIXELS, rows_for
from ..io import atomic_path
from ..pixel_stats import pixel_statistics
from ..sample_sets import read_sample_set
from ..scalings import misread
from ..set_statistics import set_statistics
from . import parse_stage_args, run_stage, stage_parser

def read_reference_set(reference_path) -> tuple:
    """(name of the reference set, its uint8 pixels) from the reference file."""
    with np.load(reference_path) as f:
        return f"fashion_mnist_test_{len(f['features'])}", f["pixels"]


def real_floor_run(data, n, seed, resolution):
    """n random training images: the FID no model can be expected to beat at this sample count."""
    images, _ = load_split(data, "train", resolution)
    pick = np.random.default_rng(seed).choice(len(images), size=n, replace=False)
    spec = {"real_data": "train_split", "n": n, "seed": seed, "resolution": resolution}
    run = {"paper": "real_data", "experiment": "train_split", "input_scaling": "none", "sampler": "none",
           "sampler_name": "none", "steps": 0, "nfe": 0, "seed": seed, "config_hash": config_hash(spec)}
    return images[pick], run


def run_of(meta: dict) -> dict:
    """The identifying columns of a sample set's rows, from the meta the sample stage stored."""
    spec, training = meta["spec"], meta["spec"]["training"]
    return {**spec["run"], "sampler": spec["sampler"]["label"],
            "sampler_name": spec["sampler"]["name"], "steps": spec["sampler"]["steps"], "nfe": meta["nfe"],
            "seed": spec["seed"], "config_hash": config_hash(training)}


def pixel_rows(images, reference_pixels) -> list:
    """The set's pixel sanity rows (pixel_stats) against the reference set's uint8 pixels."""
    stats = pixel_statistics(quantize_to_uint8(images), reference_pixels)
    return [{"extractor": PIXELS, "library": "scipy", "metric": metric, "value": value, "n_samples": len(images)}
            for metric, value in stats.items()]


def feature_rows(extractor_name: str, scored: dict, seed: int) -> list:
    """Bootstrap intervals, FID-infinity and KID of the set (set_statistics), library 'diffrepro'."""
    values = set_statistics(scored["features"], scored["ref_features"], scored["ref_mu"], scored["ref_sigma"], seed)
    return [{"extractor": extractor_name, "library": "diffrepro", "metric": metric, "value": value,
             "n_samples": len(scored["features"])} for metric, value in values.items()]


def score_set(images, reference_path, extractor, fid: dict, seed: int, name: str, **options) -> tuple:
    """The scoring protocol of one image set, as the evaluate stage, the learning curve and
    `python -m diffrepro score` all apply it: (metric rows, the set's features).

    Rows: FID and KID by each library (metrics.compute_metrics; `options` pass on, e.g. libraries
    or range checks), then the bootstrap interval, FID-infinity and KID of the features."""
    scored = {}
    rows = compute_metrics(images, reference_path, extractor, kid_subset_size=min(fid["kid_subset_size"], len(images)),
                           kid_subsets=fid["kid_subsets"], seed=seed, name=name, features_out=scored, **options)
    return rows + feature_rows(extractor.name, scored, seed), scored["features"]


def set_metrics_table(run: dict, rows: list, images, reference_set: str, reference_pixels):
    """The set's metrics.csv table: its rows with the pixel checks against the reference set
    (read_reference_set), each carrying the run's identifying columns."""
    return rows_for({**run, "reference_set": reference_set}, rows + pixel_rows(images, reference_pixels))


def save_features(path, features, image_shape) -> None:
    """The set's features in image order (image k of every set at one seed and image shape starts
    from the same noise): the claims resample them instead of running any network again."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=np.asarray(features, dtype=np.float32), image_shape=np.asarray(image_shape))


def sample_run(path):
    images, meta = read_sample_set(path)
    return images, run_of(meta)


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--samples", help="npz written by the sample stage")
    p.add_argument("--real-data", help="Fashion-MNIST npz: score n training images instead (real-data floor)")
    p.add_argument("--n", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--classifier", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--fid", required=True, help="FID settings (JSON): kid_subset_size, kid_subsets")
    p.add_argument("--misread", metavar="ACTUAL:ASSUMED", default=None,
                   help="reproduce an evaluation-range mistake on purpose, e.g. centered:symmetric")
    p.add_argument("--features", default=None, help="npz to keep the set's classifier features in")
    args = parse_stage_args(p, argv)
    fid = json.loads(args.fid)

    if args.samples:
        images, run = sample_run(args.samples)
        drawn_shape = images.shape[1:]
        # models trained at another resolution (Chen 2023's sweep) are scored at the reference's
        images = resample(images, args.resolution)
        name = args.samples
    else:
        images, run = real_floor_run(args.real_data, args.n, args.seed, args.resolution)
        drawn_shape = images.shape[1:]
        name = f"{args.n} training images"
    extractor, checks = Extractor(FMNIST_CLASSIFIER, args.classifier), {}
    if args.misread:
        images = misread(images, *args.misread.split(":"))
        checks = {"min_span_fraction": 0.0}  # the squeezed range is the point of this run
        run["sampler"] += "_range_bug"
    rows, features = score_set(images, args.reference, extractor, fid, run["seed"], name, **checks)
    if args.features:
        save_features(args.features, features, drawn_shape)
    with atomic_path(args.out) as tmp:
        set_metrics_table(run, rows, images, *read_reference_set(args.reference)).to_csv(tmp, index=False)
    print(status_line(run, rows), flush=True)  # stdout: the terminal Snakemake runs in


def status_line(run: dict, rows: list) -> str:
    """'FID 31.3 [95% 29.8-33.0] paper/experiment/scaling sampler steps seed': one line per scored set."""
    value = {(r["library"], r["metric"]): r["value"] for r in rows}
    fid = value.get(("clean-fid", "fid"), value.get(("torch-fidelity", "fid"), float("nan")))
    low, high = value.get(("diffrepro", "fid_ci_low")), value.get(("diffrepro", "fid_ci_high"))
    interval = f" [95% {low:.3g}-{high:.3g}]" if low is not None and high is not None else ""
    return (f"FID {fid:.3g}{interval} {run['paper']}/{run['experiment']}/{run['input_scaling']} "
            f"{run['sampler']} {run['steps']} steps seed {run['seed']}")


if __name__ == "__main__":
    run_stage(main)
