"""FID and KID computed by torch-fidelity and by clean-fid, on the same features.

Both libraries get the same uint8 pixels (features.quantize_to_uint8). With the classifier they
also share the extractor module, so their numbers differ only by their own statistics code (and,
for KID, by which random subsets they draw); with Inception, clean-fid runs its own network and
resizing from the same weights file (diffrepro.clean_fid_inception). The reference is a file the
workflow writes (`write_reference`): the reference pixels, their features, mu and sigma, and
clean-fid's own features and statistics where its network differs. clean-fid scores against the
stored mu/sigma and features, the way clean-fid's custom statistics work; torch-fidelity cannot
take precomputed features, so it extracts the stored reference pixels itself, once: its cache
(beside the reference file) is named by a hash of the reference pixels and the extractor's
weights, so a changed reference or extractor can never hit a stale entry. torch-fidelity unpickles
its cache files (weights_only=False), so each one must match the SHA-256 we recorded beside it when
it was written; a file without a matching record is deleted unopened and recomputed.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from cleanfid import fid as cleanfid_fid

from diffrepro.features import (
    MIN_SPAN_FRACTION,
    Extractor,
    ImageSetError,
    check_image_set,
    extract_features,
    pixels_for_extractor,
    quantize_to_uint8,
)
from diffrepro.inception_weights import sha256
from diffrepro.io import REBUILD, DamagedFileError, atomic_path, reading

LIBRARIES = ("torch-fidelity", "clean-fid")
KID_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000  # both libraries' default


class ReferenceMismatchError(ValueError):
    """The reference statistics were made with other features than the ones asked for."""


class Uint8ImageDataset(torch.utils.data.Dataset):
    """uint8 [N, C, H, W] array as the Dataset of uint8 [C, H, W] tensors torch-fidelity reads."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(self.pixels[i]))


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of features [N, d], as both libraries compute them."""
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def _device(device) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def write_reference(images: np.ndarray, extractor: Extractor, path, *, batch_size: int = 256, device=None,
                    min_span_fraction: float = MIN_SPAN_FRACTION, image_shape=(1, 32, 32)) -> Path:
    """Write the reference file (npz): pixels, features, mu, sigma and which extractor made them
    (plus clean_fid_features/mu/sigma when clean-fid has its own network for the extractor).

    `min_span_fraction=0` switches off the squeezed-range check: only for reproducing the
    fast.ai course's evaluation-range mistake on purpose. `image_shape`: [C, H, W] of the images."""
    check_image_set(images, expected_shape=tuple(image_shape), name=f"reference {Path(path).name}",
                    min_span_fraction=min_span_fraction)
    pixels = quantize_to_uint8(images)
    features = extract_features(
        pixels_for_extractor(pixels, extractor), extractor.build(), batch_size=batch_size, device=_device(device)
    )
    mu, sigma = gaussian_statistics(features)
    clean_fid = {}
    network = extractor.build_for_clean_fid()
    if network is not None:
        own = clean_fid_network_features(pixels_for_extractor(pixels, extractor), network, batch_size=batch_size,
                                         device=device)
        clean_fid = dict(zip(("clean_fid_mu", "clean_fid_sigma"), gaussian_statistics(own)), clean_fid_features=own)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy appends no ".npz" to the name
        np.savez_compressed(
            f,
            pixels=pixels,
            features=features,
            mu=mu,
            sigma=sigma,
            extractor=extractor.name,
            feature_layer=extractor.feature_layer,
            weights_sha256=extractor.weights_sha256(),
            **clean_fid,
        )
    return path


def load_reference(path, extractor: Extractor) -> dict:
    """The reference arrays, after checking they were made by this extractor's current weights."""
    with reading(path, "reference statistics file"), np.load(Path(path)) as stored:
        reference = {key: stored[key] for key in stored.files}
    for key, array in reference.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DamagedFileError(f"{path}: reference statistics file has NaN or inf in '{key}'; {REBUILD}")
    made_with = (str(reference["extractor"]), str(reference["feature_layer"]), str(reference["weights_sha256"]))
    wanted = (extractor.name, extractor.feature_layer, extractor.weights_sha256())
    if made_with != wanted:
        raise ReferenceMismatchError(
            f"{path}: written with {made_with[0]}/{made_with[1]} weights {made_with[2][:12]}, but the extractor is "
            f"{wanted[0]}/{wanted[1]} weights {wanted[2][:12]}; rewrite the reference with write_reference"
        )
    return reference


def torch_fidelity_cache(reference_path, reference: dict) -> dict:
    """torch-fidelity cache settings for a reference: a folder beside it and a content-hash name.

    Re-extracting the 10k reference images took ~4.4 of a scoring job's ~10 s on one CPU thread."""
    digest = hashlib.sha256(np.ascontiguousarray(reference["pixels"]).tobytes())
    for key in ("extractor", "feature_layer", "weights_sha256"):
        digest.update(str(reference[key]).encode())
    return {"cache": True, "cache_root": str(Path(reference_path).parent / "torch_fidelity_cache"),
            "input2_cache_name": f"reference-{digest.hexdigest()[:24]}"}


DIGEST_SUFFIX = ".sha256"


def _cache_files(cache: dict) -> list[Path]:
    root = Path(cache["cache_root"])
    return sorted(root.glob(f"{cache['input2_cache_name']}-*.pt")) if root.is_dir() else []


def drop_unrecorded_cache_files(cache: dict) -> list[Path]:
    """Delete this reference's cache files whose recorded digest is missing or differs (unopened)."""
    dropped = []
    for path in _cache_files(cache):
        record = path.with_name(path.name + DIGEST_SUFFIX)
        if record.is_file() and record.read_text().strip() == sha256(path):
            continue
        path.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        dropped.append(path)
    return dropped


def record_cache_files(cache: dict) -> None:
    """Record the digest of each cache file torch-fidelity has just written (atomically: jobs run side by side)."""
    for path in _cache_files(cache):
        record = path.with_name(path.name + DIGEST_SUFFIX)
        if not record.is_file():
            tmp = record.with_name(f"{record.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(sha256(path) + "\n")
            tmp.replace(record)


def torch_fidelity_fid_kid(
    pixels: np.ndarray, reference_pixels: np.ndarray, extractor: Extractor, *, kid_subset_size: int,
    kid_subsets: int = KID_SUBSETS, seed: int = 0, batch_size: int = 256, device=None, cache: dict | None = None,
) -> dict[str, float]:
    """FID and KID by torch_fidelity.calculate_metrics with our extractor registered in it;
    `cache` (torch_fidelity_cache) reuses the reference's features, else nothing is cached."""
    if cache:
        for path in drop_unrecorded_cache_files(cache):
            warnings.warn(f"{path}: torch-fidelity cache file without a matching recorded SHA-256; deleted unopened "
                          "(it is recomputed)", stacklevel=2)
    scores = torch_fidelity.calculate_metrics(
        input1=Uint8ImageDataset(pixels_for_extractor(pixels, extractor)),
        input2=Uint8ImageDataset(pixels_for_extractor(reference_pixels, extractor)),
        fid=True,
        kid=True,
        feature_extractor=extractor.kind.torch_fidelity_name,
        feature_extractor_weights_path=str(extractor.weights_path),
        feature_layer_fid=extractor.feature_layer,
        feature_layer_kid=extractor.feature_layer,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        rng_seed=seed,
        batch_size=batch_size,
        cuda=_device(device).type == "cuda",
        save_cpu_ram=True,  # no DataLoader worker processes
        verbose=False,
        **(cache or {"cache": False}),
    )
    if cache:
        record_cache_files(cache)
    return {"fid": scores[torch_fidelity.KEY_METRIC_FID], "kid": scores[torch_fidelity.KEY_METRIC_KID_MEAN]}


class CleanFidFeatures:
    """clean-fid's `custom_feat_extractor`: it calls model(batch) with float [B, C, H, W] holding
    the pixel values 0..255; we return them to the exact uint8 they were and run our extractor."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = batch.round().clamp(0, 255).to(torch.uint8)
        return self.module(pixels)[0].to(torch.float64)


def _identity_resize(image: np.ndarray) -> np.ndarray:
    # clean-fid resizes to 299 for Inception by default; our extractors take the images as they are
    return image


def _files_features(pixels: np.ndarray, model, *, resize, batch_size: int, device) -> np.ndarray:
    """clean-fid's own loader (get_files_features over one .npy file per image) through `model`;
    resize None: clean-fid's "clean" resize to 299x299 (PIL bicubic on float values)."""
    with tempfile.TemporaryDirectory(prefix="cleanfid-") as folder:
        files = []
        for i, image in enumerate(pixels):
            files.append(Path(folder) / f"{i:06d}.npy")
            np.save(files[-1], np.ascontiguousarray(image.transpose(1, 2, 0)))  # clean-fid reads H x W x C
        return cleanfid_fid.get_files_features(
            [str(f) for f in files],
            model=model,
            num_workers=0,
            batch_size=batch_size,
            device=device,
            mode="clean",
            custom_fn_resize=resize,
            verbose=False,
        )


def clean_fid_features(pixels: np.ndarray, module: torch.nn.Module, *, batch_size: int = 256, device=None) -> np.ndarray:
    """Features of the exact pixels (no resize) through our extractor module, by clean-fid's loader."""
    device = _device(device)
    return _files_features(pixels, CleanFidFeatures(module.to(device)), resize=_identity_resize,
                           batch_size=batch_size, device=device)


def clean_fid_network_features(pixels: np.ndarray, network: torch.nn.Module, *, batch_size: int = 256,
                               device=None) -> np.ndarray:
    """Features through clean-fid's own network for an extractor (its custom_feat_extractor), after
    clean-fid's own resize: float [B, C, 299, 299] pixel values in, float64 [B, d] out."""
    device = _device(device)
    return _files_features(pixels, network.to(device), resize=None, batch_size=batch_size, device=device)


@contextmanager
def _numpy_global_seed(seed: int):
    # clean-fid's kernel_distance draws its subsets from numpy's global generator
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def clean_fid_fid_kid(
    pixels: np.ndarray, reference: dict, extractor: Extractor, *, kid_subset_size: int,
    kid_subsets: int = KID_SUBSETS, seed: int = 0, batch_size: int = 256, device=None, features_out=None,
) -> dict[str, float]:
    """FID (frechet_distance against the stored mu/sigma) and KID (kernel_distance against the stored features).
    `features_out` (a dict), when given, receives the set's features and the reference's it was scored against."""
    pixels = pixels_for_extractor(pixels, extractor)
    network = extractor.build_for_clean_fid()
    if network is None:
        features = clean_fid_features(pixels, extractor.build(), batch_size=batch_size, device=device)
        ref_features, ref_mu, ref_sigma = reference["features"], reference["mu"], reference["sigma"]
    else:
        if "clean_fid_mu" not in reference:
            raise ReferenceMismatchError(f"the reference of {extractor.name} holds no clean-fid statistics of its own; "
                                         "rewrite it with write_reference")
        features = clean_fid_network_features(pixels, network, batch_size=batch_size, device=device)
        ref_features, ref_mu, ref_sigma = (reference["clean_fid_features"], reference["clean_fid_mu"],
                                           reference["clean_fid_sigma"])
    if features_out is not None:
        features_out.update(features=features, ref_features=ref_features, ref_mu=ref_mu, ref_sigma=ref_sigma)
    mu, sigma = gaussian_statistics(features)
    with warnings.catch_warnings():
        # clean-fid 0.1.35 passes sqrtm(disp=False), deprecated in SciPy 1.17, works with the pinned 1.17.1
        warnings.filterwarnings("ignore", message="The `disp` argument is deprecated", category=DeprecationWarning)
        fid = float(cleanfid_fid.frechet_distance(mu, sigma, ref_mu, ref_sigma))
    # same seed, same generator type and draw order (samples, then reference) as torch-fidelity's
    # RandomState(rng_seed): both libraries average over the very same KID subsets
    with _numpy_global_seed(seed):
        kid = cleanfid_fid.kernel_distance(
            ref_features, features, num_subsets=kid_subsets, max_subset_size=kid_subset_size
        )
    return {"fid": fid, "kid": float(kid)}


def compute_metrics(
    images: np.ndarray,
    reference_path,
    extractor: Extractor,
    *,
    libraries=LIBRARIES,
    kid_subset_size: int | None = None,
    kid_subsets: int = KID_SUBSETS,
    seed: int = 0,
    batch_size: int = 256,
    device=None,
    name: str = "samples",
    min_span_fraction: float = MIN_SPAN_FRACTION,
    image_shape=(1, 32, 32),
    features_out=None,
) -> list[dict]:
    """FID and KID of an image set against a reference file, by each library.

    Rows: {extractor, library, metric ('fid' | 'kid'), value, n_samples}. KID's subset size
    defaults to min(1000, n_samples, n_reference); both libraries average `kid_subsets` subsets.
    `features_out`: see clean_fid_fid_kid (filled when clean-fid is among the libraries).
    """
    check_image_set(images, expected_shape=tuple(image_shape), name=name, min_span_fraction=min_span_fraction)
    reference = load_reference(reference_path, extractor)
    pixels = quantize_to_uint8(images)
    if pixels.shape[1:] != reference["pixels"].shape[1:]:
        raise ImageSetError(f"{name}: images {pixels.shape[1:]} but the reference has {reference['pixels'].shape[1:]}")
    n, n_reference = len(pixels), len(reference["pixels"])
    if kid_subset_size is None:
        kid_subset_size = min(KID_MAX_SUBSET_SIZE, n, n_reference)
    if not 2 <= kid_subset_size <= min(n, n_reference):
        raise ValueError(f"kid_subset_size {kid_subset_size} must lie in [2, min(n_samples={n}, n_reference={n_reference})]")
    unknown = set(libraries) - set(LIBRARIES)
    if unknown:
        raise ValueError(f"unknown libraries {sorted(unknown)}; known: {LIBRARIES}")
    options = dict(kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, seed=seed, batch_size=batch_size, device=device)
    rows = []
    for library in libraries:
        if library == "torch-fidelity":
            scores = torch_fidelity_fid_kid(pixels, reference["pixels"], extractor,
                                            cache=torch_fidelity_cache(reference_path, reference), **options)
        else:
            scores = clean_fid_fid_kid(pixels, reference, extractor, features_out=features_out, **options)
        rows += [
            {"extractor": extractor.name, "library": library, "metric": metric, "value": value, "n_samples": n}
            for metric, value in scores.items()
        ]
    return rows
