"""Stage: train the Fashion-MNIST classifier whose features the FID/KID use; record its accuracy."""

import json
import time

import numpy as np

from ..data import load_split
from ..io import atomic_path
from ..models.classifier import save_classifier, train_classifier
from . import parse_stage_args, run_stage, stage_parser

MIN_ACCURACY = 0.80  # below this the features are too poor for FID to mean anything


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(images * 255).astype(np.uint8)


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--cfg", required=True, help="classifier settings (JSON)")
    p.add_argument("--data", required=True)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--metrics", required=True)
    args = parse_stage_args(p, argv)
    cfg = json.loads(args.cfg)

    train_x, train_y = load_split(args.data, "train", args.resolution, cfg.get("train_limit"))
    test_x, test_y = load_split(args.data, "test", args.resolution)
    t0 = time.perf_counter()
    model, accuracy = train_classifier(to_uint8(train_x), train_y, to_uint8(test_x), test_y,
                                       epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                                       width=cfg["width"], seed=0, threads=args.threads, augment=False)
    seconds = time.perf_counter() - t0
    if accuracy < MIN_ACCURACY:
        raise SystemExit(f"error: the FID classifier reached only {accuracy:.1%} test accuracy (< {MIN_ACCURACY:.0%}); "
                         f"raise classifier.epochs or classifier.width in workflow/config.yaml")
    meta = {"test_accuracy": accuracy, "train_seconds": seconds, "resolution": args.resolution,
            "n_train": int(len(train_x)), "feature_dim": int(model.feature_dim), **cfg}
    save_classifier(model, args.out, meta)
    with atomic_path(args.metrics) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    run_stage(main)
