"""Stage: features and Gaussian statistics of the Fashion-MNIST test split (the FID reference)."""

import os
from pathlib import Path


from ..data import load_split
from ..features import FMNIST_CLASSIFIER, Extractor
from ..metrics import write_reference
from ..scalings import misread
from . import parse_stage_args, run_stage, stage_parser


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--n", type=int, default=None, help="first n test images (default: all 10k)")
    p.add_argument("--misread", metavar="ACTUAL:ASSUMED", default=None,
                   help="reproduce an evaluation-range mistake on purpose, e.g. centered:symmetric")
    args = parse_stage_args(p, argv)
    images, _ = load_split(args.data, "test", args.resolution, args.n)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".part")
    checks = {}
    if args.misread:
        images, checks = misread(images, *args.misread.split(":")), {"min_span_fraction": 0.0}
    write_reference(images, Extractor(FMNIST_CLASSIFIER, args.classifier), tmp, **checks)
    os.replace(tmp, out)


if __name__ == "__main__":
    run_stage(main)
