"""CIFAR-10 preparation from a small fake of the official python archive (the real pickle layout:
Python-2 pickles with bytes keys, b"data" uint8 [n, 3072] as red, green, blue planes), and the
one-line errors for a missing, wrong or damaged copy."""

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from diffrepro import cifar10
from diffrepro.data import DataError, load_split

PER_BATCH = 3  # images per fake batch: 15 train, 3 test


def fake_batches(seed=0) -> dict:
    """{file name: pickled bytes} with the layout of cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in cifar10.BATCH_MD5:
        data = rng.integers(0, 256, size=(PER_BATCH, 3 * 32 * 32), dtype=np.uint8)
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, PER_BATCH)],
                 b"data": data, b"filenames": [f"img{i}.png".encode() for i in range(PER_BATCH)]}
        batches[name] = pickle.dumps(batch, protocol=2)
    batches["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
    return batches


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def batches():
    return fake_batches()


@pytest.fixture
def archive(tmp_path, batches):
    path = tmp_path / "staged" / cifar10.ARCHIVE
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def folder(tmp_path, batches):
    path = tmp_path / "extracted" / cifar10.FOLDER
    path.mkdir(parents=True)
    for name, raw in batches.items():
        (path / name).write_bytes(raw)
    return path


def checksums_of(archive=None, batches=None) -> dict:
    """The fake's own checksums, passed where the real files' published ones are the default."""
    out = {}
    if archive is not None:
        out["archive_md5"] = md5(archive.read_bytes())
    if batches is not None:
        out["batch_md5"] = {name: md5(raw) for name, raw in batches.items() if name in cifar10.BATCH_MD5}
    return out


def expected_arrays(batches, split):
    names = cifar10.SPLITS[split]
    data = [pickle.loads(batches[n], encoding="bytes") for n in names]
    return (np.concatenate([d[b"data"] for d in data]).reshape(-1, 3, 32, 32),
            np.concatenate([d[b"labels"] for d in data]))


def test_prepare_from_the_archive_keeps_images_labels_and_channel_order(archive, batches, tmp_path):
    out = tmp_path / "cifar10.npz"
    cifar10.prepare(out, archive, **checksums_of(archive=archive))
    with np.load(out) as f:
        assert sorted(f.files) == ["test_images", "test_labels", "train_images", "train_labels"]
        assert f["train_images"].shape == (5 * PER_BATCH, 3, 32, 32) and f["train_images"].dtype == np.uint8
        assert f["test_images"].shape == (PER_BATCH, 3, 32, 32)
        for split in ("train", "test"):
            images, labels = expected_arrays(batches, split)
            np.testing.assert_array_equal(f[f"{split}_images"], images)
            np.testing.assert_array_equal(f[f"{split}_labels"], labels)
    # row 0 of the red plane is the first 32 values of an image's 3072, green starts at 1024
    first = pickle.loads(batches["data_batch_1"], encoding="bytes")[b"data"][0]
    x, _ = load_split(out, "train", limit=1)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32  # no padding, unlike Fashion-MNIST
    np.testing.assert_allclose(x[0, 0, 0] * 255, first[:32], atol=1e-4)
    np.testing.assert_allclose(x[0, 1, 0] * 255, first[1024:1056], atol=1e-4)
    np.testing.assert_allclose(x[0, 2, 31] * 255, first[-32:], atol=1e-4)


@pytest.mark.parametrize("where", ["folder itself", "its parent", "parent of the archive"])
def test_prepare_from_an_extracted_folder_or_a_folder_holding_the_archive(where, archive, folder, batches, tmp_path):
    out = tmp_path / "cifar10.npz"
    root = {"folder itself": folder, "its parent": folder.parent, "parent of the archive": archive.parent}[where]
    cifar10.prepare(out, root, **checksums_of(archive=archive, batches=batches))
    with np.load(out) as f:
        np.testing.assert_array_equal(f["test_images"], expected_arrays(batches, "test")[0])


def test_download_is_verified_and_reused(archive, tmp_path):
    downloads = tmp_path / "downloads"
    sums = checksums_of(archive=archive)
    cifar10.prepare(tmp_path / "a.npz", None, downloads, url=archive.as_uri(), **sums)
    assert (downloads / cifar10.ARCHIVE).read_bytes() == archive.read_bytes()
    archive.unlink()  # a second preparation reads the earlier download, it does not fetch again
    cifar10.prepare(tmp_path / "b.npz", None, downloads, url=archive.as_uri(), **sums)


def one_line_naming_the_fix(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert "cifar10_root" in message and cifar10.URL in message and cifar10.ARCHIVE_MD5 in message
    return message


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(archive, tmp_path):
    downloads = tmp_path / "downloads"
    with pytest.raises(DataError) as err:  # the published MD5: the fake is not the real archive
        cifar10.prepare(tmp_path / "c.npz", None, downloads, url=archive.as_uri())
    assert f"expected {cifar10.ARCHIVE_MD5}" in one_line_naming_the_fix(err)
    assert not any(downloads.iterdir())


def test_a_failed_download_says_where_to_put_the_file(tmp_path):
    with pytest.raises(DataError) as err:
        cifar10.prepare(tmp_path / "c.npz", None, tmp_path / "downloads", url=(tmp_path / "nowhere.tar.gz").as_uri())
    assert "download" in one_line_naming_the_fix(err)


def test_wrong_or_damaged_copies_give_one_line(archive, folder, batches, tmp_path):
    out = tmp_path / "cifar10.npz"
    with pytest.raises(DataError) as err:  # the staged fake checked against the real archive's MD5
        cifar10.prepare(out, archive)
    assert f"{archive} has MD5" in one_line_naming_the_fix(err)
    with pytest.raises(DataError) as err:
        cifar10.prepare(out, folder)
    assert "data_batch_1 has MD5" in one_line_naming_the_fix(err)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError) as err:
        cifar10.prepare(out, folder, **checksums_of(batches=batches))
    assert "lacks test_batch" in one_line_naming_the_fix(err)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:500])
    with pytest.raises(DataError) as err:
        cifar10.prepare(out, cut, archive_md5=md5(cut.read_bytes()))
    assert "truncated or corrupt" in one_line_naming_the_fix(err)
    assert not out.exists()


def test_missing_or_unusable_path_and_no_download_give_one_line(tmp_path):
    out = tmp_path / "cifar10.npz"
    with pytest.raises(DataError) as err:
        cifar10.prepare(out, tmp_path / "missing")
    assert "missing does not exist" in one_line_naming_the_fix(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        cifar10.prepare(out, tmp_path / "empty")
    assert "holds neither" in one_line_naming_the_fix(err)
    with pytest.raises(DataError) as err:
        cifar10.prepare(out)
    assert "downloading is off" in one_line_naming_the_fix(err)


def test_a_batch_that_is_not_cifar_is_refused(archive, folder, batches, tmp_path):
    bad = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)
    (folder / "data_batch_3").write_bytes(bad)
    sums = checksums_of(batches={**batches, "data_batch_3": bad})
    with pytest.raises(DataError) as err:
        cifar10.prepare(tmp_path / "x.npz", folder, **sums)
    assert "is not a CIFAR-10 batch" in one_line_naming_the_fix(err)


def test_the_stage_reports_one_line(tmp_path, capsys):
    from diffrepro.stages import prepare_cifar10, run_stage

    with pytest.raises(SystemExit):
        run_stage(lambda: prepare_cifar10.main(["--out", str(tmp_path / "c.npz"), "--root", str(tmp_path / "no")]))
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cifar10_root") and "\n" not in err
