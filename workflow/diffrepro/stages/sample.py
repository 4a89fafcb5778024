"""Stage: sample one (model, sampler, steps, seed) into an npz of images in [0, 1].

With --shard I --shards N it draws only shard I's batches (the merge_samples stage joins the
shards into the file this stage writes without them).
"""

import json

from ..io import load_checkpoint
from ..sample_sets import sample_set_meta, shard_meta, write_sample_set
from ..sampling import draw_samples, shard_batches
from . import parse_stage_args, run_stage, stage_parser


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--spec", required=True, help="resolved sample spec (JSON)")
    p.add_argument("--model", required=True)
    p.add_argument("--aux", action="append", default=[], metavar="OPTION=PATH",
                   help="an auxiliary network for a sampler option (e.g. noise_level_predictor=...)")
    p.add_argument("--shard", type=int, default=None, help="draw only this shard (0-based) of --shards")
    p.add_argument("--shards", type=int, default=1, help="shards the sample set is split into")
    args = parse_stage_args(p, argv)

    spec = json.loads(args.spec)
    model_file = load_checkpoint(args.model, "trained model", required=("spec", "state_dict"))
    aux = dict(item.split("=", 1) for item in args.aux)
    batches = None if args.shard is None else shard_batches(spec["n_samples"], spec["batch_size"],
                                                            args.shard, args.shards)
    images, info = draw_samples(model_file, spec, aux=aux, batches=batches)
    if info["non_finite"]:
        # clip() would hide NaNs as 0/1 pixels; a diverged sampler must not get a FID.
        raise SystemExit(f"error: {info['non_finite']} non-finite pixels sampling {args.out}; the sampler diverged")
    if batches is None:
        meta = sample_set_meta(info, spec)
    else:
        meta = shard_meta(info, spec, args.shard, args.shards, batches, images)
    write_sample_set(args.out, images, meta)


if __name__ == "__main__":
    run_stage(main)
