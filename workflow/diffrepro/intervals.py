"""Bootstrap draws of FID for claims: replicate networks, then images, resampled; no network runs again.

A claim compares configurations (experiment, input scaling, sampler, steps); each configuration
has one sample set per replicate seed, and each set's features were kept when it was scored.
One bootstrap draw
  1. resamples the replicate seeds with replacement, one draw shared by every configuration
     (seed k trains network k and draws the initial noise of every set at seed k), then
  2. resamples image indices with replacement, one index vector per (seed, set size) shared
     by every configuration: sets that share a seed share their initial noise image by image
     (sampling.batch_generator), so pairing by index keeps that correlation (common random
     numbers); where two sets do not share noise the pairing is harmless (their images are
     independent, so a shared index vector resamples each as an independent draw would),
and recomputes each configuration's FID from the resampled features (mean over its seeds).
The reference statistics are held fixed: every FID here is measured against the same 10k
reference images, so their sampling noise is common to all configurations and cancels from
differences.

Intervals are basic (reverse-percentile) bootstrap intervals, 2 theta - q(1 - a/2) to
2 theta - q(a/2): a resampled set repeats images, which biases its FID upward by an amount the
point estimate does not have; the basic interval reflects that shift back (Davison & Hinkley
1997, Sec. 5.2). tests/test_intervals.py checks coverage on synthetic sets of known FID.
"""

from dataclasses import dataclass

import numpy as np

DRAWS = 1000
LEVEL = 0.95
CHUNK = 100  # draws whose covariance matrices are held at once (CHUNK x d x d floats)


@dataclass(frozen=True)
class Reference:
    """Fixed reference statistics: mean, the symmetric square root of the covariance, its trace."""
    mu: np.ndarray
    sqrt_sigma: np.ndarray
    trace: float

    @classmethod
    def of(cls, mu, sigma):
        values, vectors = np.linalg.eigh(np.asarray(sigma, dtype=np.float64))
        root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        return cls(np.asarray(mu, dtype=np.float64), root, float(np.trace(sigma)))


def frechet_distances(mu: np.ndarray, sigma: np.ndarray, ref: Reference) -> np.ndarray:
    """FID of Gaussians (mu [B, d], sigma [B, d, d]) against the reference (Heusel et al. 2017, Eq. 6):
    |mu - mu_r|^2 + tr(S) + tr(S_r) - 2 tr((S_r^1/2 S S_r^1/2)^1/2), the last trace from the
    eigenvalues of a symmetric matrix (the same number as tr sqrtm(S S_r))."""
    inner = ref.sqrt_sigma @ sigma @ ref.sqrt_sigma
    eigenvalues = np.linalg.eigvalsh((inner + np.swapaxes(inner, -1, -2)) / 2)
    cross = np.sqrt(np.clip(eigenvalues, 0, None)).sum(-1)
    return ((mu - ref.mu) ** 2).sum(-1) + np.trace(sigma, axis1=-2, axis2=-1) + ref.trace - 2 * cross


def fid(features: np.ndarray, ref: Reference) -> float:
    x = np.asarray(features, dtype=np.float64)
    return float(frechet_distances(x.mean(0)[None], np.cov(x, rowvar=False)[None], ref)[0])


def resampled_fids(features: np.ndarray, counts: np.ndarray, ref: Reference) -> np.ndarray:
    """FID of each resample of `features` [n, d]; counts [B, n] says how often each image is drawn."""
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    out = np.empty(len(counts))
    for start in range(0, len(counts), CHUNK):
        w = counts[start:start + CHUNK].astype(np.float64)
        mu = w @ x / n
        # sum_i w_i x_i x_i^T as one batched matrix product, minus n mu mu^T; n - 1 as np.cov
        second = (x.T[None] * w[:, None, :]) @ x
        sigma = (second - n * mu[:, :, None] * mu[:, None, :]) / (n - 1)
        out[start:start + CHUNK] = frechet_distances(mu, sigma, ref)
    return out


def index_counts(rng: np.random.Generator, draws: int, n: int) -> np.ndarray:
    """[draws, n]: how many times each of n images is picked by n draws with replacement."""
    picks = rng.integers(0, n, size=(draws, n))
    return np.stack([np.bincount(row, minlength=n) for row in picks])


def bootstrap_values(sets: dict, ref: Reference, draws: int = DRAWS, seed: int = 0) -> dict:
    """Bootstrap draws of each configuration's FID (mean over its seeds).

    sets: {configuration: {seed: features [n, d]}}. Returns {configuration: [draws]}. Seeds are
    resampled from the union of seeds (one draw for all configurations); a configuration that
    lacks a drawn seed uses its own seeds resampled with the same positions modulo their number,
    so a single-seed configuration contributes its one network to every draw.
    """
    rng = np.random.default_rng(seed)
    all_seeds = sorted({s for per_seed in sets.values() for s in per_seed})
    seed_picks = rng.integers(0, len(all_seeds), size=(draws, len(all_seeds)))
    counts = {}  # (seed, n) -> [draws, n] shared by every set of that seed and size
    fids = {}  # (configuration, seed) -> [draws]
    for configuration, per_seed in sets.items():
        for s, features in per_seed.items():
            key = (s, len(features))
            if key not in counts:
                counts[key] = index_counts(rng, draws, len(features))
            fids[configuration, s] = resampled_fids(features, counts[key], ref)
    values = {}
    for configuration, per_seed in sets.items():
        own = sorted(per_seed)
        positions = seed_picks % len(own)  # [draws, k] positions into this configuration's seeds
        stacked = np.stack([fids[configuration, s] for s in own])  # [seeds, draws]
        values[configuration] = stacked[positions.T, np.arange(draws)].mean(0)
    return values


def basic_interval(point: float, draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(low, high): the basic bootstrap interval of `point` from its bootstrap `draws`."""
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo_q, hi_q = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(2 * point - hi_q), float(2 * point - lo_q)
