"""Stage: train one experiment's network. Called by workflow/rules/train.smk."""

import json
from pathlib import Path

import torch

from ..build import build_loss, build_model
from ..spec_hash import config_hash, describe_training
from ..data import load_split
from ..io import atomic_save
from ..performance import Performance
from ..scalings import get_scaling
from ..training import seed_everything, train
from . import parse_stage_args, run_stage, stage_parser


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--spec", required=True, help="resolved training spec (JSON)")
    p.add_argument("--data", required=True)
    p.add_argument("--losses", required=True)
    p.add_argument("--checkpoint", default=None)
    args = parse_stage_args(p, argv)

    spec = json.loads(args.spec)
    images, _ = load_split(args.data, "train", spec["resolution"], spec["train_limit"])
    data = torch.from_numpy(get_scaling(spec["input_scaling"]).to_model(images))
    seed_everything(spec["train"]["seed"])  # the network's init is part of the result
    net, schedule, denoiser = build_model(spec)
    digest = config_hash(spec)
    snapshots = {} if spec["train"].get("snapshot_every") else None  # for a learning curve (rule learning_curve)
    state, log = train(denoiser, schedule, build_loss(spec), data, spec["train"],
                       checkpoint_path=Path(args.checkpoint) if args.checkpoint else None,
                       performance=Performance.of_spec(spec),
                       describe=describe_training(spec), snapshots=snapshots, log_path=args.losses)
    atomic_save({"spec": spec, "config_hash": digest, "state_dict": state,
                 "n_parameters": sum(p.numel() for p in net.parameters()),
                 **({"snapshots": snapshots} if snapshots is not None else {})}, args.out)
    if args.checkpoint and Path(args.checkpoint).exists():
        Path(args.checkpoint).unlink()
    # stdout reaches the terminal Snakemake runs in (stderr goes to the job's log)
    tail = log[-min(len(log), 25):]
    print(f"trained {describe_training(spec)}: {spec['train']['steps']} steps, loss {sum(r['loss'] for r in tail) / len(tail):.4g} "
          f"(mean of the last {len(tail)}), {log[-1]['images_per_s']:.0f} images/s", flush=True)


if __name__ == "__main__":
    run_stage(main)
