"""Stage: join the shards of a sample set (written by `sample --shard I --shards N`, in shard
order) into the npz the unsharded sample stage writes."""

from ..sample_sets import merge_shards, read_sample_set, write_sample_set
from . import parse_stage_args, run_stage, stage_parser


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("shards", nargs="+", help="shard files, shard 0 first")
    args = parse_stage_args(p, argv)
    images, meta = merge_shards([read_sample_set(path) for path in args.shards])
    write_sample_set(args.out, images, meta)


if __name__ == "__main__":
    run_stage(main)
