"""Sample-set files: the npz the sample stage writes, the shards of one, and their merge.

A sample set is `images` (float32 [N, C, H, W] in [0, 1]) and `meta` (JSON). A shard holds the
images of consecutive whole batches (sampling.shard_batches) with the same meta plus a `shard`
entry; merging the shards of a set gives the very file the unsharded sample stage writes (the
same images, the same meta; only `seconds`, wall-clock time, is the shards' sum).
"""

import json
import zipfile

import numpy as np

from .spec_hash import config_hash
from .errors import UserError
from .io import atomic_path, reading


class ShardError(UserError, ValueError):
    """Shard files that do not make up one sample set (missing, repeated, from another config)."""


def sample_set_meta(info: dict, spec: dict) -> dict:
    """The meta of a sample set: draw_samples' info but its wall-clock time (that goes to the job's
    benchmark file), the sample spec and its hash: the same spec gives the same bytes."""
    kept = {key: value for key, value in info.items() if key != "seconds"}
    return {**kept, "spec": spec, "config_hash": config_hash(spec), "value_range": [0.0, 1.0]}


def shard_meta(info: dict, spec: dict, shard: int, shards: int, batches: range, images: np.ndarray) -> dict:
    # The merge needs the count of out-of-range pixels, not the shard's fraction, to give the
    # same float as the unsharded set's mean; the fraction is count / size exactly, so it rounds back.
    count = round(info["out_of_range_fraction"] * images.size)
    return {**sample_set_meta(info, spec),
            "shard": {"index": shard, "of": shards, "batches": [batches.start, batches.stop],
                      "images": len(images), "out_of_range_count": count}}


ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # np.savez stamps each member with the clock; a fixed time keeps the bytes reproducible


def write_sample_set(path, images: np.ndarray, meta: dict) -> None:
    """An npz (images, meta as JSON) that np.load reads, whose bytes depend only on its contents."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name, array in (("images", images), ("meta", np.asarray(json.dumps(meta)))):
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def read_sample_set(path) -> tuple:
    """(images, meta) of a sample-set file; a damaged one is one DamagedFileError line naming it."""
    with reading(path, "sample set", "delete it and rerun the workflow to draw it again"), np.load(path) as f:
        return f["images"], json.loads(str(f["meta"]))


def merge_shards(shards: list) -> tuple:
    """(images, meta) of the whole set from its shards' (images, meta), given in shard order."""
    if not shards:
        raise ShardError("no shard files to merge")
    metas = [meta for _, meta in shards]
    first = metas[0]
    expected = first["shard"]["of"]
    indices = [meta["shard"]["index"] for meta in metas]
    if indices != list(range(expected)) or any(meta["shard"]["of"] != expected for meta in metas):
        raise ShardError(f"shards {indices} (of {[m['shard']['of'] for m in metas]}) are not shards 0..{expected - 1} "
                         f"of one set, in order; delete the shard files and rerun")
    hashes = sorted({meta["config_hash"] for meta in metas})
    if len(hashes) > 1:
        raise ShardError(f"shards of different sample specs ({', '.join(hashes)}); delete the shard files and rerun")
    ranges = [meta["shard"]["batches"] for meta in metas]
    if any(a[1] != b[0] for a, b in zip(ranges, ranges[1:])) or ranges[0][0] != 0:
        raise ShardError(f"shard batches {ranges} do not follow each other from batch 0; delete the shard files and rerun")
    images = np.concatenate([images for images, _ in shards])
    spec = first["spec"]
    if len(images) != spec["n_samples"]:
        raise ShardError(f"shards hold {len(images)} images, the sample spec asks for {spec['n_samples']}; "
                         f"delete the shard files and rerun")
    if len({meta["nfe"] for meta in metas}) > 1:
        raise ShardError(f"shards report different NFE {[meta['nfe'] for meta in metas]}")
    out_of_range = sum(meta["shard"]["out_of_range_count"] for meta in metas)
    # the keys and their order of draw_samples' info, so the merged meta is the unsharded one
    info = {"nfe": first["nfe"], "out_of_range_fraction": out_of_range / images.size,
            "non_finite": sum(meta["non_finite"] for meta in metas)}
    return images, sample_set_meta(info, spec)
