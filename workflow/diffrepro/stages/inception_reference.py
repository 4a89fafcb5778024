"""Stage: Inception features and Gaussian statistics of a data set's training split, the FID
reference of the papers' CIFAR-10 protocol (50k samples against the 50k training images)."""

from ..data import load_split
from ..features import INCEPTION, Extractor
from ..io import atomic_path
from ..metrics import write_reference
from . import parse_stage_args, run_stage, stage_parser


def main(argv=None):
    p = stage_parser(__doc__)
    p.add_argument("--data", required=True, help="npz of a prepared data set (diffrepro.data.load_split reads it)")
    p.add_argument("--weights", required=True, help="the Inception-v3 weights file (pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument("--n", type=int, default=None, help="first n training images (default: all)")
    args = parse_stage_args(p, argv)
    images, _ = load_split(args.data, "train", limit=args.n)
    with atomic_path(args.out) as tmp:
        write_reference(images, Extractor(INCEPTION, args.weights), tmp, image_shape=images.shape[1:])


if __name__ == "__main__":
    run_stage(main)
