"""Stage: sample one (model, sampler, steps, seed) into an npz of images in [0, 1]."""

import json

import numpy as np

from ..config import config_hash
from ..io import atomic_path, load_checkpoint
from ..sampling import draw_samples
from . import parse_stage_args, run_stage, stage_parser


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--spec", required=True, help="resolved sample spec (JSON)")
    p.add_argument("--model", required=True)
    p.add_argument("--aux", action="append", default=[], metavar="OPTION=PATH",
                   help="an auxiliary network for a sampler option (e.g. noise_level_predictor=...)")
    args = parse_stage_args(p, argv)

    spec = json.loads(args.spec)
    model_file = load_checkpoint(args.model, "trained model", required=("spec", "state_dict"))
    aux = dict(item.split("=", 1) for item in args.aux)
    images, info = draw_samples(model_file, spec, aux=aux)
    if info["non_finite"]:
        # clip() would hide NaNs as 0/1 pixels; a diverged sampler must not get a FID.
        raise SystemExit(f"error: {info['non_finite']} non-finite pixels sampling {args.out}; the sampler diverged")
    meta = {**info, "spec": spec, "config_hash": config_hash(spec), "value_range": [0.0, 1.0]}
    with atomic_path(args.out) as tmp:
        np.savez(tmp, images=images, meta=json.dumps(meta))


if __name__ == "__main__":
    run_stage(main)
