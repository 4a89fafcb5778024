"""Image-set checks and FID feature extraction.

An *image set* is a float numpy array [N, 1, 32, 32] in [0, 1] ("image space"). Before any
feature is computed it goes through `check_image_set`, because the course's retracted FIDs
(lesson 23; docs/papers.md §0) came from feeding [-0.5, 0.5] images to a classifier trained on
[-1, 1]. Then `quantize_to_uint8` turns it into pixels, the one quantisation step shared by torch-fidelity,
clean-fid and the reference statistics.

Extractors are torch-fidelity `FeatureExtractorBase` modules taking uint8 [B, C, H, W]:
- "fmnist-classifier": our classifier's pre-logit features (registered with torch-fidelity
  under that name, weights passed as `feature_extractor_weights_path`);
- "inception": torch-fidelity's own Inception-v3 ("inception-v3-compat", registered again with
  float64 output), only when its weights file is on disk; nothing here downloads.
clean-fid calls the very same classifier module (see metrics.py), so both libraries see the same
classifier features; for Inception it runs its own network and resizing, built from the same
weights file (diffrepro.clean_fid_inception).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from diffrepro import inception_weights
from diffrepro.clean_fid_inception import CleanFidInception
from diffrepro.models.classifier import classifier_input_from_uint8, load_classifier
from diffrepro.errors import UserError

FMNIST_CLASSIFIER = "fmnist-classifier"
INCEPTION = "inception"

# Below this fraction of the allowed range (between the 0.1 and 99.9 percentiles of all pixels)
# a set is rejected. The course's bug, [-0.5, 0.5] data read as [-1, 1], is a span of 0.5 in
# image space; real Fashion-MNIST (and any clipped sample set) spans the whole range.
MIN_SPAN_FRACTION = 0.6


class ImageSetError(UserError, ValueError):
    """An image set is not what feature extraction expects (range, shape, dtype, finiteness)."""


def _range_hint(low: float, high: float) -> str:
    if low < -0.25 and high <= 0.5 + 1e-3:
        return "did you forget to map the model's input scaling back? ([-0.5, 0.5] -> x + 0.5)"
    if low < -0.5 and high <= 1 + 1e-3:
        return "did you forget to map the model's input scaling back? ([-1, 1] -> (x + 1) / 2)"
    if low >= 0 and high > 2:
        return "these look like 0..255 pixel values: divide by 255 (quantisation happens inside the metrics code)"
    return "map samples back to image space and clip them to it before scoring"


def check_image_set(
    images,
    *,
    expected_shape: tuple[int, ...] = (1, 32, 32),
    value_range: tuple[float, float] = (0.0, 1.0),
    name: str = "images",
    min_span_fraction: float = MIN_SPAN_FRACTION,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """Return `images` unchanged if it is a valid image set, else raise ImageSetError with one actionable line."""
    lo, hi = value_range
    if not isinstance(images, np.ndarray):
        raise ImageSetError(f"{name}: got {type(images).__name__}, expected a numpy array [N, {', '.join(map(str, expected_shape))}]")
    if not np.issubdtype(images.dtype, np.floating):
        raise ImageSetError(
            f"{name}: dtype {images.dtype} but image sets are float in [{lo:g}, {hi:g}]; "
            "convert with images / 255 (quantisation to uint8 happens once, inside the metrics code)"
        )
    if images.ndim != 1 + len(expected_shape) or images.shape[1:] != tuple(expected_shape):
        hint = ""
        if images.ndim == 4 and images.shape[-1] == expected_shape[0]:
            hint = "; channels-last? transpose to [N, C, H, W]"
        raise ImageSetError(f"{name}: shape {images.shape} but expected [N, {', '.join(map(str, expected_shape))}]{hint}")
    if len(images) == 0:
        raise ImageSetError(f"{name}: the set is empty")
    finite = np.isfinite(images)
    if not finite.all():
        n_nan = int(np.isnan(images).sum())
        raise ImageSetError(f"{name}: {n_nan} NaN and {images.size - n_nan - int(finite.sum())} inf values; the sampler diverged")
    low, high = float(images.min()), float(images.max())
    if low < lo - tolerance or high > hi + tolerance:
        raise ImageSetError(
            f"{name}: values span [{low:.2f}, {high:.2f}] but image space is [{lo:g}, {hi:g}]; {_range_hint(low, high)}"
        )
    p_low, p_high = np.percentile(images, [0.1, 99.9])
    if p_high - p_low < min_span_fraction * (hi - lo):
        raise ImageSetError(
            f"{name}: 99.8% of the values lie in [{p_low:.2f}, {p_high:.2f}], less than {min_span_fraction:.0%} of "
            f"[{lo:g}, {hi:g}]; a squeezed range is how the course's retracted FIDs happened (images in [-0.5, 0.5] "
            "given to a [-1, 1] classifier): check the mapping back to image space"
        )
    return images


def quantize_to_uint8(images: np.ndarray) -> np.ndarray:
    """Image space [0, 1] -> uint8 pixels, round(x * 255): the only quantisation on the way to any extractor."""
    return np.rint(np.asarray(images, dtype=np.float64) * 255.0).astype(np.uint8)


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over our Fashion-MNIST classifier: uint8 [B, C, H, W] -> features.

    torch-fidelity builds it as cls(name, features_list, **calculate_metrics kwargs); the trained
    classifier file arrives as `feature_extractor_weights_path`, the documented way to give an
    extractor its weights.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{name}: pass feature_extractor_weights_path= the classifier file written by the workflow")
        self.classifier, self.meta = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return "prelogits", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "prelogits"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
            raise ValueError(f"{self.name} expects uint8 [B, C, H, W], got {getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
        prelogits = self.classifier.features(classifier_input_from_uint8(x))
        # float64 so the libraries' statistics (covariance, cubic kernel) are not limited by float32
        features = {"prelogits": prelogits, "logits": self.classifier.head(prelogits)}
        return tuple(features[layer].to(torch.float64) for layer in self.features_list)


if FMNIST_CLASSIFIER not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(FMNIST_CLASSIFIER, ClassifierFeatureExtractor)


class InceptionFeatureExtractor(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 (TF-compatible weights, resizes to 299 itself), features as
    float64 like ours, so both libraries' KID sums are not limited by float32."""

    def forward(self, x):
        return tuple(f.to(torch.float64) for f in super().forward(x))


INCEPTION_TORCH_FIDELITY_NAME = "inception-v3-compat-float64"
if INCEPTION_TORCH_FIDELITY_NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(INCEPTION_TORCH_FIDELITY_NAME, InceptionFeatureExtractor)


@dataclass(frozen=True)
class ExtractorKind:
    torch_fidelity_name: str
    module_class: type
    default_layer: str
    input_channels: int
    # clean-fid's own network, cls(weights_path, feature_layer), fed clean-fid's resized images;
    # None: clean-fid runs module_class's module on the pixels as they are
    clean_fid_network: type | None = None
    # checks a weights file before anything opens it (raises); None: the file is ours, read
    # with torch.load(weights_only=True)
    verify_weights: Callable[[Path], Path] | None = None


EXTRACTOR_KINDS = {
    FMNIST_CLASSIFIER: ExtractorKind(FMNIST_CLASSIFIER, ClassifierFeatureExtractor, "prelogits", 1),
    # Inception-v3 wants RGB; grey images are repeated over 3 channels, it resizes to 299 itself.
    INCEPTION: ExtractorKind(INCEPTION_TORCH_FIDELITY_NAME, InceptionFeatureExtractor, "2048", 3, CleanFidInception,
                             inception_weights.verify),
}


@dataclass(frozen=True)
class Extractor:
    """Which features: an extractor kind, its weights file and the layer used for FID and KID."""

    name: str
    weights_path: Path
    feature_layer: str | None = None

    def __post_init__(self):
        if self.name not in EXTRACTOR_KINDS:
            raise ValueError(f"unknown extractor {self.name!r}; known: {sorted(EXTRACTOR_KINDS)}")
        object.__setattr__(self, "weights_path", Path(self.weights_path))
        if self.kind.verify_weights is not None:  # before build(), torch-fidelity or clean-fid can open it
            self.kind.verify_weights(self.weights_path)
        if self.feature_layer is None:
            object.__setattr__(self, "feature_layer", self.kind.default_layer)

    @property
    def kind(self) -> ExtractorKind:
        return EXTRACTOR_KINDS[self.name]

    def weights_sha256(self) -> str:
        return hashlib.sha256(self.weights_path.read_bytes()).hexdigest()

    def build(self) -> FeatureExtractorBase:
        """The extractor module (eval mode, no grad) returning a 1-tuple with `feature_layer`'s features."""
        module = self.kind.module_class(
            self.kind.torch_fidelity_name, [self.feature_layer], feature_extractor_weights_path=str(self.weights_path)
        )
        return module.requires_grad_(False).eval()

    def build_for_clean_fid(self) -> torch.nn.Module | None:
        """clean-fid's own network for these features, or None when clean-fid shares build()'s module."""
        network = self.kind.clean_fid_network
        return None if network is None else network(self.weights_path, self.feature_layer)


def pixels_for_extractor(pixels: np.ndarray, extractor: Extractor) -> np.ndarray:
    """uint8 [N, C, H, W] with C matched to what the extractor takes (grey repeated for RGB nets)."""
    wanted = extractor.kind.input_channels
    if pixels.shape[1] == wanted:
        return pixels
    if pixels.shape[1] == 1:
        return np.repeat(pixels, wanted, axis=1)
    raise ImageSetError(f"{extractor.name} takes {wanted} channel(s), the images have {pixels.shape[1]}")


@torch.no_grad()
def extract_features(pixels: np.ndarray, module: FeatureExtractorBase, *, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Features [N, d] (float64) of uint8 pixels [N, C, H, W] through one extractor module."""
    module = module.to(device)
    chunks = [
        module(torch.from_numpy(np.ascontiguousarray(pixels[i : i + batch_size])).to(device))[0]
        for i in range(0, len(pixels), batch_size)
    ]
    return torch.cat(chunks).to(torch.float64).cpu().numpy()


def inception_weights_candidates(config: Mapping) -> list[Path]:
    """Where the Inception weights may be: the configured path, else torch hub's cache (under
    pytorch-fid's / clean-fid's file name or torch-fidelity's)."""
    # load_state_dict_from_url stores a download under <hub dir>/checkpoints/<file name of the URL>
    return inception_weights.candidates(config.get(inception_weights.CONFIG_KEY), torch.hub.get_dir())


@dataclass(frozen=True)
class ExtractorStatus:
    extractor: Extractor | None
    reason: str

    @property
    def available(self) -> bool:
        return self.extractor is not None


def available_extractors(config: Mapping) -> dict[str, ExtractorStatus]:
    """Which extractors can run here. Config keys: `classifier_path` (the trained classifier file)
    and optionally `inception_weights`. Nothing is downloaded: a missing file makes an extractor
    unavailable, with the reason the report prints."""
    out = {}
    classifier_path = config.get("classifier_path")
    if classifier_path and Path(classifier_path).is_file():
        out[FMNIST_CLASSIFIER] = ExtractorStatus(Extractor(FMNIST_CLASSIFIER, classifier_path), "trained by the workflow")
    else:
        out[FMNIST_CLASSIFIER] = ExtractorStatus(None, f"classifier file not found: {classifier_path}")
    found = [p for p in inception_weights_candidates(config) if p.is_file()]
    if found:
        out[INCEPTION] = ExtractorStatus(Extractor(INCEPTION, found[0]), f"weights at {found[0]}")
    else:
        looked = ", ".join(str(p) for p in inception_weights_candidates(config))
        out[INCEPTION] = ExtractorStatus(None, f"Inception weights not present offline (looked for {looked})")
    return out
