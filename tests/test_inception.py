"""Inception-v3 FID without the real weights: where the weights are looked for, clean-fid's own
Inception built from our file (never downloaded) and wired as its custom feature extractor, and
the two paper-scale stages (inception_reference, evaluate_inception) end to end on a randomly
initialised network."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diffrepro import inception_weights
from diffrepro.clean_fid_inception import CleanFidInception
from diffrepro.spec_hash import config_hash
from diffrepro.features import quantize_to_uint8
from diffrepro.metrics import clean_fid_network_features
from diffrepro.sample_sets import write_sample_set


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A randomly initialised state dict of the FID Inception, saved as the real file is named."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        patched.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        module = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / inception_weights.FILE_NAME
    torch.save(module.state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def trust_random_weights(request, monkeypatch):
    """Random weights are not the real file: the tests that use them trust them by their own digest."""
    if "random_weights" in request.fixturenames:
        path = request.getfixturevalue("random_weights")
        monkeypatch.setattr(inception_weights, "SHA256_PREFIX", inception_weights.sha256(path)[:8])


@pytest.fixture
def no_downloads(monkeypatch):
    import cleanfid.inception_pytorch as cip
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setattr(cip, "load_state_dict_from_url", lambda *a, **k: pytest.fail("clean-fid tried to download"))
    monkeypatch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: pytest.fail("torch-fidelity tried to download"))


# --- where the weights are -------------------------------------------------------------------

def test_file_names_are_the_ones_the_libraries_ask_for():
    import cleanfid.inception_pytorch as cip
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    assert Path(cip.FID_WEIGHTS_URL).name == inception_weights.FILE_NAME
    assert Path(tfi.URL_INCEPTION_V3).name == inception_weights.TORCH_FIDELITY_FILE_NAME


def test_hub_dir_is_torch_hubs_without_importing_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert inception_weights.hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "torch_home" / "hub"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert inception_weights.hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "cache" / "torch" / "hub"


def test_weights_are_found_configured_or_in_the_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert inception_weights.find() is None
    message = inception_weights.missing_message()
    assert "\n" not in message and "inception_weights" in message and inception_weights.FILE_NAME in message
    assert str(tmp_path / "hub" / "checkpoints" / inception_weights.FILE_NAME) in message
    cached = tmp_path / "hub" / "checkpoints" / inception_weights.TORCH_FIDELITY_FILE_NAME
    cached.parent.mkdir(parents=True)
    cached.touch()
    assert inception_weights.find() == cached
    configured = tmp_path / "elsewhere.pth"
    assert inception_weights.find(configured) is None  # a configured path is the only candidate
    configured.touch()
    assert inception_weights.find(configured) == configured


# --- clean-fid's own network from our file -------------------------------------------------------

def test_clean_fid_inception_loads_our_file_and_gives_2048_features(random_weights, no_downloads):
    network = CleanFidInception(random_weights)
    state = torch.load(random_weights, weights_only=True)
    conv = network.network.blocks[0][0].conv.weight
    assert torch.equal(conv, state["Conv2d_1a_3x3.conv.weight"])  # our weights, not a fresh init
    features = network(torch.rand(2, 3, 299, 299) * 255)
    assert features.shape == (2, 2048) and features.dtype == torch.float64
    with pytest.raises(ValueError, match="no layer 'logits'"):
        CleanFidInception(random_weights, "logits")


def test_clean_fid_wiring_resizes_like_clean_fid_and_returns_the_extractors_features():
    """A stand-in network of the right output shape: clean-fid hands it its own 'clean' resize of
    the exact pixels (float 0..255, 299x299) and returns what it gives, one row per image."""
    from cleanfid.resize import build_resizer

    seen = []

    class StandIn(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048].double()

    rng = np.random.default_rng(0)
    pixels = quantize_to_uint8(rng.random((5, 3, 32, 32)))
    features = clean_fid_network_features(pixels, StandIn(), batch_size=4, device="cpu")
    assert [tuple(b.shape) for b in seen] == [(4, 3, 299, 299), (1, 3, 299, 299)]
    assert all(b.dtype == torch.float32 for b in seen)
    expected = build_resizer("clean")(pixels[0].transpose(1, 2, 0))  # H x W x C, as clean-fid reads it
    np.testing.assert_allclose(seen[0][0].numpy(), expected.transpose(2, 0, 1), rtol=0, atol=1e-4)
    assert features.shape == (5, 2048) and features.dtype == np.float64


# --- the stages the paper DAG runs -----------------------------------------------------------------

def fake_cifar10_npz(path, n=6, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {f"{split}_images": rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8) for split in ("train", "test")}
    arrays.update({f"{split}_labels": rng.integers(0, 10, n, dtype=np.uint8) for split in ("train", "test")})
    np.savez(path, **arrays)
    return path


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 5 images, 2048-d: a rank-deficient covariance
def test_reference_and_evaluation_stages_score_a_cifar10_set_with_both_libraries(random_weights, no_downloads,
                                                                                 tmp_path):
    from diffrepro.stages import evaluate_inception, inception_reference

    data = fake_cifar10_npz(tmp_path / "cifar10.npz")
    reference = tmp_path / "reference" / "cifar10_train_inception.npz"
    inception_reference.main(["--data", str(data), "--weights", str(random_weights), "--n", "5", "--out", str(reference)])
    with np.load(reference) as stored:
        assert stored["pixels"].shape == (5, 3, 32, 32)
        assert stored["features"].shape == stored["clean_fid_features"].shape == (5, 2048)

    training = {"paper": "ddpm_2020", "experiment": "eps_simple", "input_scaling": "symmetric", "dataset": "cifar10"}
    spec = {"run": {"paper": "ddpm_2020", "experiment": "eps_simple", "input_scaling": "symmetric"},
            "training": training, "sampler": {"label": "ddpm_large", "name": "ddpm_ancestral", "steps": 10},
            "seed": 0, "n_samples": 5}
    with np.load(data) as f:  # the training images themselves: FID 0 by both libraries
        images = f["train_images"][:5].astype(np.float32) / 255
    samples = tmp_path / "seed0.npz"
    write_sample_set(samples, images, {"nfe": 10, "spec": spec})
    out = tmp_path / "metrics.csv"
    evaluate_inception.main(["--samples", str(samples), "--weights", str(random_weights), "--reference",
                             str(reference), "--fid", json.dumps({"kid_subset_size": 4, "kid_subsets": 3}),
                             "--out", str(out)])
    rows = pd.read_csv(out)
    pixels, rows = rows[rows["extractor"] == "pixels"], rows[rows["extractor"] != "pixels"]
    assert set(pixels["metric"]) == {"pixel_w1", "bright_fraction"}
    assert pixels.set_index("metric")["value"]["pixel_w1"] == pytest.approx(0.0, abs=1e-12)  # the same images
    assert set(rows["library"]) == {"torch-fidelity", "clean-fid"} and set(rows["metric"]) == {"fid", "kid"}
    assert set(rows["extractor"]) == {"inception"} and set(rows["reference_set"]) == {"cifar10_train_5"}
    assert set(rows["config_hash"]) == {config_hash(training)} and set(rows["n_samples"]) == {5}
    assert (rows[rows["metric"] == "fid"]["value"].abs() < 1e-3).all()
