"""clean-fid's own Inception-v3, built from the weights file torch-fidelity's Inception loads.

clean-fid ships a PyTorch port of the TensorFlow FID network (cleanfid.inception_pytorch, from
pytorch-fid) whose weights it only gets by downloading pytorch-fid's release file through torch
hub. Answering that one request with the configured file builds the network offline, from the
very file torch-fidelity reads, and it runs as clean-fid's custom feature extractor
(diffrepro.metrics). The two libraries then share the weights but not the network code or the
resizing to 299x299 (torch-fidelity: TensorFlow-1 bilinear inside its network; clean-fid: its
"clean" PIL bicubic resize), which is what a comparison of the two should test.
"""

import contextlib
import os
import warnings

import torch
from cleanfid import inception_pytorch

from .inception_weights import FILE_NAME


@contextlib.contextmanager
def weights_from(weights_path):
    """For the block's duration clean-fid's request for FILE_NAME loads weights_path instead."""
    def load(url, *args, **kwargs):
        if os.path.basename(url) != FILE_NAME:
            raise ValueError(f"clean-fid asked for {url}, expected pytorch-fid's {FILE_NAME}")
        return torch.load(weights_path, map_location="cpu", weights_only=True)

    original = inception_pytorch.load_state_dict_from_url
    inception_pytorch.load_state_dict_from_url = load
    try:
        yield
    finally:
        inception_pytorch.load_state_dict_from_url = original


class CleanFidInception(torch.nn.Module):
    """clean-fid's Inception at one layer ('64', '192', '768' or '2048', torch-fidelity's names):
    float [B, 3, H, W] pixel values 0..255, already resized by clean-fid -> float64 [B, d]."""

    def __init__(self, weights_path, feature_layer: str = "2048"):
        super().__init__()
        dims = inception_pytorch.InceptionV3.BLOCK_INDEX_BY_DIM
        if not str(feature_layer).isdigit() or int(feature_layer) not in dims:
            raise ValueError(f"clean-fid's Inception has no layer {feature_layer!r} (layers: {', '.join(map(str, dims))})")
        with weights_from(weights_path), warnings.catch_warnings():
            # clean-fid builds torchvision's Inception with `pretrained=False`, which torchvision deprecates
            warnings.filterwarnings("ignore", message=r"(The parameter 'pretrained'|Arguments other than a weight)",
                                    category=UserWarning)
            self.network = inception_pytorch.InceptionV3(output_blocks=[dims[int(feature_layer)]], resize_input=False)
        self.requires_grad_(False).eval()

    def forward(self, x):
        features = self.network(x / 255)[0]  # it maps [0, 1] to the [-1, 1] the TensorFlow net took
        # below the last block the maps are averaged over space, as pytorch-fid does for those layers
        return features.mean(dim=(2, 3)).to(torch.float64)
