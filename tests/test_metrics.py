"""Image-set checks, feature extraction, and FID/KID by torch-fidelity and clean-fid.

Expected values come from the definitions: the Frechet distance between Gaussians (Dowson &
Landau 1982; FID, Heusel et al. 2017 eq. 6) computed here by an independent symmetric route,
and the unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3 (KID, Binkowski et al.
2018). A tiny randomly initialised classifier is enough: both libraries must agree with the
formulas on whatever features it gives.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from diffrepro import inception_weights
from diffrepro.data import load_split
from diffrepro.features import (
    FMNIST_CLASSIFIER,
    INCEPTION,
    Extractor,
    ImageSetError,
    available_extractors,
    check_image_set,
    extract_features,
    quantize_to_uint8,
)
from diffrepro.metrics import (
    ReferenceMismatchError,
    clean_fid_features,
    compute_metrics,
    load_reference,
    torch_fidelity_cache,
    write_reference,
)
from diffrepro.models.classifier import FashionClassifier, classifier_input_from_uint8, save_classifier



@pytest.fixture(scope="module")
def real_images(fmnist_npz):
    """The first 2000 Fashion-MNIST test images, zero-padded to 32x32, in image space [0, 1]."""
    return load_split(fmnist_npz, "test", limit=2000)[0]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier") / "tiny.pt"
    save_classifier(FashionClassifier(width=8), path, {"trained": False})
    return Extractor(FMNIST_CLASSIFIER, path)


@pytest.fixture(scope="module")
def reference(real_images, extractor, tmp_path_factory):
    return write_reference(real_images[:1000], extractor, tmp_path_factory.mktemp("ref") / "reference.npz")


def frechet_by_symmetric_sqrt(mu1, s1, mu2, s2):
    # tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix: eigh instead of sqrtm/eigvals
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


def unbiased_mmd2_cubic(x, y):
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda kk: kk.sum() - np.trace(kk)  # noqa: E731
    return float((off(kxx) + off(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2)


def by_library(rows, metric):
    return {r["library"]: r["value"] for r in rows if r["metric"] == metric}


# --- image-set checks -------------------------------------------------------------------------


def _valid(n=8, seed=0):
    return np.random.default_rng(seed).random((n, 1, 32, 32)).astype(np.float32)


def test_check_image_set_accepts_a_valid_set(real_images):
    subset = real_images[:64]
    assert check_image_set(subset, name="real") is subset
    check_image_set(_valid().astype(np.float64))


@pytest.mark.parametrize(
    "images, message",
    [
        (_valid() - 0.5, r"span \[-0.50, 0.50\] but image space is \[0, 1\]; did you forget .* x \+ 0.5"),
        (_valid() * 2 - 1, r"span \[-1.00, 1.00\].*input scaling back\? \(\[-1, 1\] -> \(x \+ 1\) / 2\)"),
        (_valid() * 1.1 - 0.05, r"span \[-0.05, 1.05\].*clip them"),
        (_valid() * 255, r"0\.\.255 pixel values"),
        (_valid() * 0.5 + 0.25, r"less than 60%.*retracted"),
        (_valid()[:, :, :28, :28], r"shape \(8, 1, 28, 28\) but expected \[N, 1, 32, 32\]"),
        (np.repeat(_valid(), 3, axis=1), r"shape \(8, 3, 32, 32\)"),
        (_valid().transpose(0, 2, 3, 1), r"channels-last"),
        (_valid()[0], r"shape"),
        (np.where(np.arange(8)[:, None, None, None] == 3, np.nan, _valid()), r"1024 NaN and 0 inf"),
        (np.where(np.arange(8)[:, None, None, None] == 3, np.inf, _valid()), r"0 NaN and 1024 inf"),
        ((_valid() * 255).astype(np.uint8), r"dtype uint8 but image sets are float"),
        (torch.from_numpy(_valid()), r"expected a numpy array"),
        (_valid()[:0], r"empty"),
    ],
)
def test_check_image_set_rejects(images, message):
    with pytest.raises(ImageSetError, match=message):
        check_image_set(images, name="samples.npz")


def test_image_set_error_is_a_value_error_naming_the_set():
    with pytest.raises(ValueError, match=r"^samples\.npz: "):
        check_image_set(_valid() - 0.5, name="samples.npz")


def test_quantize_is_round_of_x_times_255():
    k = np.arange(256, dtype=np.float64)
    assert np.array_equal(quantize_to_uint8(k / 255), k.astype(np.uint8))
    # just below / above a half step round to the nearer level
    assert np.array_equal(quantize_to_uint8(np.array([(10.49) / 255, (10.51) / 255])), [10, 11])


# --- extractor ----------------------------------------------------------------------------------


def test_extractor_gives_prelogit_features_of_the_classifier(extractor):
    module = extractor.build()
    pixels = quantize_to_uint8(_valid(5))
    features = extract_features(pixels, module, batch_size=2)
    assert features.shape == (5, 64) and features.dtype == np.float64
    with torch.no_grad():
        expected = module.classifier.features(classifier_input_from_uint8(torch.from_numpy(pixels)))
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=1e-6, atol=1e-7)
    assert classifier_input_from_uint8(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_clean_fid_path_feeds_unresized_exact_pixels(extractor):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return (x.flatten(1).double(),)

    pixels = quantize_to_uint8(_valid(6))
    features = clean_fid_features(pixels, Recorder(), batch_size=4)
    assert [tuple(b.shape) for b in seen] == [(4, 1, 32, 32), (2, 1, 32, 32)]
    assert all(b.dtype == torch.uint8 for b in seen)
    np.testing.assert_array_equal(features, pixels.reshape(6, -1))


# --- reference file ---------------------------------------------------------------------------------


def test_reference_file_holds_features_and_their_gaussian(reference, extractor, real_images):
    ref = load_reference(reference, extractor)
    assert np.array_equal(ref["pixels"], quantize_to_uint8(real_images[:1000]))
    assert ref["features"].shape == (1000, 64)
    np.testing.assert_allclose(ref["mu"], ref["features"].mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref["sigma"], np.cov(ref["features"].T), rtol=1e-12, atol=1e-12)


def test_reference_from_other_weights_is_refused(reference, extractor, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_classifier(FashionClassifier(width=8), other)
    with pytest.raises(ReferenceMismatchError, match="rewrite the reference"):
        load_reference(reference, Extractor(FMNIST_CLASSIFIER, other))


def test_reference_is_checked_too(extractor, tmp_path):
    with pytest.raises(ImageSetError, match=r"reference ref\.npz: values span \[-0.50"):
        write_reference(_valid(16) - 0.5, extractor, tmp_path / "ref.npz")


# --- FID / KID ------------------------------------------------------------------------------------


def test_set_against_itself_has_zero_fid_and_the_exact_kid(reference, extractor, real_images):
    # full-size subsets are all equal (permutations of the sets), so 2 of them suffice
    rows = compute_metrics(real_images[:1000], reference, extractor, kid_subset_size=1000, kid_subsets=2)
    assert {(r["library"], r["metric"]) for r in rows} == {
        (lib, m) for lib in ("torch-fidelity", "clean-fid") for m in ("fid", "kid")
    }
    assert all(r["extractor"] == FMNIST_CLASSIFIER and r["n_samples"] == 1000 for r in rows)
    for value in by_library(rows, "fid").values():
        assert abs(value) < 1e-3
    # KID is then the full-set statistic, here 2 (mean off-diagonal k - mean diagonal k) / n < 0
    features = load_reference(reference, extractor)["features"]
    expected = unbiased_mmd2_cubic(features, features)
    assert expected < 0
    for value in by_library(rows, "kid").values():
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_libraries_agree_with_the_formulas_on_disjoint_halves(reference, extractor, real_images):
    samples = real_images[1000:2000]
    rows = compute_metrics(samples, reference, extractor, kid_subset_size=1000, kid_subsets=2)
    ref = load_reference(reference, extractor)
    features = extract_features(quantize_to_uint8(samples), extractor.build())
    expected_fid = frechet_by_symmetric_sqrt(features.mean(0), np.cov(features.T), ref["mu"], ref["sigma"])
    fids = by_library(rows, "fid")
    assert fids["torch-fidelity"] == pytest.approx(fids["clean-fid"], rel=1e-2)
    for value in fids.values():
        assert value == pytest.approx(expected_fid, rel=1e-4)
    expected_kid = unbiased_mmd2_cubic(features, ref["features"])
    for value in by_library(rows, "kid").values():
        assert value == pytest.approx(expected_kid, rel=1e-5)


def test_torch_fidelity_reference_cache_follows_a_rewritten_reference(extractor, real_images, tmp_path):
    path, samples = tmp_path / "reference.npz", real_images[1500:2000]
    score = lambda: by_library(compute_metrics(samples, path, extractor, kid_subset_size=100, kid_subsets=2), "fid")
    write_reference(real_images[:500], extractor, path)
    first, again = score(), score()  # the second run reads torch-fidelity's cached reference features
    assert again == first
    write_reference(real_images[500:1000], extractor, path)  # same path, other images: a new cache entry
    rewritten = score()
    assert rewritten["torch-fidelity"] != first["torch-fidelity"]
    assert rewritten["torch-fidelity"] == pytest.approx(rewritten["clean-fid"], rel=1e-2)  # clean-fid reads mu/sigma from the file
    names = {f.name.split("-fmnist")[0] for f in (tmp_path / "torch_fidelity_cache").iterdir()}
    assert len(names) == 2


def test_different_sets_score_far_worse_than_real_halves(reference, extractor, real_images):
    half = real_images[1000:1500]
    blurred = uniform_filter(half, size=(1, 1, 5, 5))
    noise = np.random.default_rng(0).random(half.shape).astype(np.float32)
    fid = {
        name: by_library(compute_metrics(images, reference, extractor, libraries=("clean-fid",), kid_subsets=1), "fid")[
            "clean-fid"
        ]
        for name, images in [("real", half), ("blurred", blurred), ("noise", noise)]
    }
    assert fid["real"] > 0
    assert fid["blurred"] > 10 * fid["real"]
    assert fid["noise"] > 10 * fid["real"]


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # an untrained net has dead ReLU features
def test_kid_subset_size_default_and_bounds(reference, extractor, real_images):
    rows = compute_metrics(real_images[1000:1100], reference, extractor, kid_subsets=3)
    assert [r["n_samples"] for r in rows] == [100] * 4  # default subset size min(1000, 100) works
    # 100 of the 1000 reference features per subset: the libraries draw the same subsets (same seed and order)
    kids = by_library(rows, "kid")
    assert kids["torch-fidelity"] == pytest.approx(kids["clean-fid"], rel=1e-9)
    with pytest.raises(ValueError, match="kid_subset_size 200"):
        compute_metrics(real_images[1000:1100], reference, extractor, kid_subset_size=200)
    with pytest.raises(ImageSetError, match="samples: values span"):
        compute_metrics(real_images[:100] * 2 - 1, reference, extractor)


# --- availability (nothing downloads) --------------------------------------------------------------


def test_inception_is_unavailable_without_weights(extractor, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    status = available_extractors({"classifier_path": str(extractor.weights_path)})
    assert status[FMNIST_CLASSIFIER].available
    assert not status[INCEPTION].available
    assert "Inception weights not present offline" in status[INCEPTION].reason
    status = available_extractors({"classifier_path": str(tmp_path / "missing.pt"), "inception_weights": str(tmp_path / "x.pth")})
    assert not status[FMNIST_CLASSIFIER].available and "missing.pt" in status[FMNIST_CLASSIFIER].reason
    assert str(tmp_path / "x.pth") in status[INCEPTION].reason


@pytest.fixture
def fake_inception_weights(tmp_path, monkeypatch):
    """A randomly initialised Inception state dict saved where torch hub would cache the real one."""
    import cleanfid.inception_pytorch as cleanfid_inception
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with monkeypatch.context() as patched:
        patched.setattr(inception, "load_state_dict_from_url", lambda *a, **k: {})
        patched.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        module = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["64"])
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.setattr(cleanfid_inception, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    path = tmp_path / "hub" / "checkpoints" / Path(inception.URL_INCEPTION_V3).name
    path.parent.mkdir(parents=True)
    torch.save(module.state_dict(), path)
    # random weights are not the real file: trust this one by its own digest
    monkeypatch.setattr(inception_weights, "SHA256_PREFIX", inception_weights.sha256(path)[:8])
    return path


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 24 samples, 64-d: a rank-deficient covariance
def test_inception_runs_through_both_libraries_when_weights_exist(fake_inception_weights, real_images, tmp_path):
    status = available_extractors({})
    assert status[INCEPTION].available and status[INCEPTION].extractor.weights_path == fake_inception_weights
    inception = Extractor(INCEPTION, fake_inception_weights, feature_layer="64")  # early layer: cheap at 299x299
    images = real_images[:24]
    reference = write_reference(images, inception, tmp_path / "inception_ref.npz")
    # clean-fid runs its own Inception (same weights file, its own code and resize): its own statistics
    stored = load_reference(reference, inception)
    assert stored["clean_fid_features"].shape == stored["features"].shape == (24, 64)
    assert not np.allclose(stored["clean_fid_features"], stored["features"], rtol=1e-3)
    rows = compute_metrics(images, reference, inception, kid_subsets=5)
    for value in by_library(rows, "fid").values():
        assert abs(value) < 1e-3
    kids = by_library(rows, "kid")  # the same subsets of slightly different features
    assert kids["torch-fidelity"] == pytest.approx(kids["clean-fid"], rel=0.05)


# --- files torch-fidelity would unpickle ---------------------------------------------------------------


class WritesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): the marker file appearing means code from a file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_planted_inception_file_is_refused_unopened(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    planted = tmp_path / "hub" / "checkpoints" / inception_weights.FILE_NAME
    planted.parent.mkdir(parents=True)
    torch.save({"x": WritesMarkerWhenUnpickled(marker)}, planted)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(inception_weights.UntrustedWeightsError, match=r"does not start with 6726825d") as raised:
        available_extractors({})  # found in the hub cache, checked before any library could load it
    assert "\n" not in str(raised.value) and str(planted) in str(raised.value)
    with pytest.raises(inception_weights.UntrustedWeightsError):
        Extractor(INCEPTION, planted)
    assert not marker.exists()


def test_a_planted_torch_fidelity_cache_file_is_deleted_unopened(extractor, real_images, tmp_path):
    path, samples = tmp_path / "reference.npz", real_images[1500:1700]
    score = lambda: by_library(compute_metrics(samples, path, extractor, kid_subset_size=100, kid_subsets=2), "fid")
    write_reference(real_images[:300], extractor, path)
    first = score()  # writes the cache and records each file's digest
    cache = torch_fidelity_cache(path, load_reference(path, extractor))
    files = sorted(Path(cache["cache_root"]).glob(f"{cache['input2_cache_name']}-*.pt"))
    assert files and all(f.with_name(f.name + ".sha256").is_file() for f in files)
    assert score() == first  # recorded files are read
    marker = tmp_path / "ran"
    for f in files:  # replaced by a file that runs code when unpickled; the records stay as they were
        torch.save({"x": WritesMarkerWhenUnpickled(marker)}, f)
    with pytest.warns(UserWarning, match="without a matching recorded SHA-256; deleted unopened"):
        again = score()
    assert not marker.exists() and again == first
    files[0].with_name(files[0].name + ".sha256").unlink()  # a file without a record is not read either
    with pytest.warns(UserWarning, match="deleted unopened"):
        assert score() == first


def test_score_command_rates_user_images_as_the_evaluate_stage_rates_a_set(reference, extractor, real_images, tmp_path,
                                                                             capsys):
    """`python -m diffrepro score`: 28x28 uint8 images padded as the workflow pads them, or PNGs in a
    folder, give the rows of the same images scored directly; a bad path is one line."""
    from PIL import Image

    from diffrepro.__main__ import main, score

    results = tmp_path / "results"
    (results / "classifier").mkdir(parents=True)
    (results / "reference").mkdir()
    (results / "classifier" / "classifier.pt").write_bytes(extractor.weights_path.read_bytes())
    (results / "reference" / "fashion_mnist_test.npz").write_bytes(Path(reference).read_bytes())
    pixels = quantize_to_uint8(real_images[1000:1300])[:, 0, 2:30, 2:30]  # back to Fashion-MNIST's 28x28 uint8
    np.save(tmp_path / "mine.npy", pixels)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{k:04d}.png")

    assert main(["score", str(tmp_path / "mine.npy"), "--results", str(results), "--out", str(tmp_path / "a.csv")]) == 0
    assert main(["score", str(folder), "--results", str(results), "--out", str(tmp_path / "b.csv")]) == 0
    import pandas as pd
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    direct = compute_metrics(real_images[1000:1300], reference, extractor, kid_subset_size=300, kid_subsets=50)
    fid = {r["library"]: r["value"] for r in direct if r["metric"] == "fid"}
    got = a[a["metric"] == "fid"].set_index("library")["value"]
    assert got["clean-fid"] == pytest.approx(fid["clean-fid"]) and got["torch-fidelity"] == pytest.approx(fid["torch-fidelity"])
    assert np.allclose(a["value"], b["value"]) and set(a["paper"]) == {"user"}
    assert set(score(tmp_path / "mine.npy", results / "classifier" / "classifier.pt",
                     results / "reference" / "fashion_mnist_test.npz")["metric"]) >= {"fid", "kid", "fid_ci_low"}
    assert main(["score", str(tmp_path / "missing.npz"), "--results", str(results)]) == 1
    assert capsys.readouterr().err.strip().endswith("missing.npz does not exist")
