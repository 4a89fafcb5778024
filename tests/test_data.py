"""Fashion-MNIST loading: verification, actionable errors, padding, resampling and scalings."""

import gzip
import shutil

import numpy as np
import pytest
from conftest import FMNIST_DEBIAN

from diffrepro import data
from diffrepro.data import DataError, load_raw, load_split, prepare
from diffrepro.scalings import FMNIST_MEAN, FMNIST_STD, SCALINGS, get_scaling


def test_split_shapes_padding_and_ranges(fmnist_npz):
    x, y = load_split(fmnist_npz, "test")
    assert x.shape == (10000, 1, 32, 32) and x.dtype == np.float32 and y.shape == (10000,)
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.all(x[:, :, :2, :] == 0) and np.all(x[:, :, :, -2:] == 0)  # zero padding 28 -> 32
    assert set(np.unique(y)) == set(range(10))
    x16, _ = load_split(fmnist_npz, "train", resolution=16, limit=5)
    x64, _ = load_split(fmnist_npz, "train", resolution=64, limit=5)
    assert x16.shape == (5, 1, 16, 16) and x64.shape == (5, 1, 64, 64)
    # area-preserving resampling keeps the mean brightness
    x32, _ = load_split(fmnist_npz, "train", limit=5)
    assert abs(x16.mean() - x32.mean()) < 0.01 and abs(x64.mean() - x32.mean()) < 0.01


def test_scaling_constants_are_the_data_statistics(fmnist_npz):
    x, _ = load_split(fmnist_npz, "train")
    assert x.mean() == pytest.approx(FMNIST_MEAN, abs=1e-4)
    assert x.std() == pytest.approx(FMNIST_STD, abs=1e-4)
    z = get_scaling("standardized").to_model(x)
    assert z.mean() == pytest.approx(0, abs=1e-3) and z.std() == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("name,lo,hi", [("unit", 0, 1), ("centered", -0.5, 0.5), ("symmetric", -1, 1)])
def test_scalings_map_image_range(name, lo, hi):
    s = SCALINGS[name]
    assert s.to_model(0.0) == pytest.approx(lo) and s.to_model(1.0) == pytest.approx(hi)
    u = np.linspace(0, 1, 7)
    np.testing.assert_allclose(s.to_image(s.to_model(u)), u, atol=1e-12)
    # sigma_data of [-1, 1] Fashion-MNIST is the course's 0.66
    assert SCALINGS["symmetric"].sigma_data == pytest.approx(0.66, abs=0.01)


def test_unknown_scaling_lists_allowed():
    with pytest.raises(ValueError, match="allowed: unit, centered, symmetric, standardized"):
        get_scaling("minus_one_to_one")


def _copy_raw(tmp_path):
    root = tmp_path / "fm"
    shutil.copytree(FMNIST_DEBIAN, root)
    return root


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_ROOT", tmp_path / "no-debian")


def test_data_root_is_used_and_verified(fmnist_npz, tmp_path, no_debian):
    root = _copy_raw(tmp_path)
    arrays = load_raw(root)
    assert arrays["train_images"].shape == (60000, 28, 28)


def test_truncated_file_gives_one_actionable_line(fmnist_npz, tmp_path, monkeypatch):
    root = _copy_raw(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_ROOT", tmp_path / "no-debian")
    f = root / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(DataError) as err:
        load_raw(root)
    msg = str(err.value)
    assert "t10k-labels" in msg and "truncated or corrupt" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "\n" not in msg


def test_wrong_content_fails_sha256(fmnist_npz, tmp_path, monkeypatch):
    root = _copy_raw(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_ROOT", tmp_path / "no-debian")
    f = root / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[100] ^= 1  # one flipped label
    f.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="SHA-256"):
        load_raw(root)


def test_missing_offline_says_how_to_get_it(tmp_path, no_debian):
    with pytest.raises(DataError) as err:
        load_raw(None, download_dir=None)
    assert "apt-get install dataset-fashion-mnist" in str(err.value) and "data_root" in str(err.value)


def test_failed_download_says_how_to_get_it(tmp_path, no_debian, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="download failed.*apt-get install dataset-fashion-mnist"):
        load_raw(None, download_dir=tmp_path / "dl")
    assert not any((tmp_path / "dl").glob("*.gz"))


def test_missing_data_root_folder(tmp_path):
    with pytest.raises(DataError, match="data_root .* does not exist"):
        load_raw(tmp_path / "nope")


def test_prepare_is_atomic_and_damaged_npz_is_reported(fmnist_npz, tmp_path):
    out = tmp_path / "d.npz"
    prepare(out)
    assert out.exists() and not list(tmp_path.glob("*.part*"))
    out.write_bytes(out.read_bytes()[:5000])
    with pytest.raises(DataError, match="unreadable.*rerun"):
        load_split(out, "test")


def test_an_empty_data_root_says_which_source_is_used_and_why(fmnist_npz, tmp_path, capsys, monkeypatch):
    if not (FMNIST_DEBIAN / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.setattr(data, "DEBIAN_ROOT", FMNIST_DEBIAN)
    empty = tmp_path / "empty"
    empty.mkdir()
    load_raw(empty)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    for line in lines:
        assert f"using {FMNIST_DEBIAN}/" in line and f"(data_root {empty} has neither " in line
    load_raw(None)
    assert all("data_root" not in line for line in capsys.readouterr().err.splitlines())
