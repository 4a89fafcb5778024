"""Per-set numbers beyond the libraries' FID and KID, from the features the set was scored with.

  fid_ci_low / fid_ci_high   95% bootstrap interval of the set's FID over its images (the
                             sample draw only; replicate networks enter in the claims)
  fid_infinity               FID extrapolated to infinitely many samples (Chong & Forsyth 2020,
                             Sec. 3): FID at several subset sizes n fitted linearly in 1/n, the
                             intercept; FID - fid_infinity is the part of a FID that is bias
  kid, kid_ci_low/high       KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel
                             (x.y / d + 1)^3 against a fixed subset of the reference features,
                             with its 95% bootstrap interval over the set's images

The library rows (torch-fidelity, clean-fid) stay the FID and KID of record; these rows carry
library 'diffrepro'.
"""

import numpy as np

from .intervals import Reference, basic_interval, fid, index_counts, resampled_fids

DRAWS = 500
KID_REFERENCE = 2000  # reference features in KID's kernel sums: 2000^2 entries is cheap, 10k^2 is not
FID_INFINITY_POINTS = 8  # subset sizes from n/2 to n
FID_INFINITY_REPEATS = 5  # random subsets per size, averaged


def fid_infinity(features: np.ndarray, ref: Reference, seed: int = 0) -> float:
    """Intercept of a least-squares line through (1/n_i, mean FID of random n_i-subsets)."""
    rng = np.random.default_rng(seed)
    n = len(features)
    sizes = np.unique(np.linspace(n // 2, n, FID_INFINITY_POINTS).astype(int))
    means = [np.mean([fid(features[rng.choice(n, size, replace=False)], ref)
                      for _ in range(FID_INFINITY_REPEATS if size < n else 1)]) for size in sizes]
    slope, intercept = np.polyfit(1.0 / sizes, means, 1)
    return float(intercept)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def kid_with_weights(k_xx: np.ndarray, k_xy_mean: np.ndarray, yy_term: float, weights: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 of sets given by image counts `weights` [B, n] (pairs of distinct positions)."""
    n = weights.shape[1]
    w = weights.astype(np.float64)
    xx = (np.einsum("bi,ij,bj->b", w, k_xx, w) - w @ np.diag(k_xx)) / (n * (n - 1))  # a position with itself
    return xx + yy_term - 2 * (w @ k_xy_mean) / n


def kid_terms(features: np.ndarray, ref_features: np.ndarray, seed: int = 0):
    """(K_xx, mean of K_xy over the reference subset per image, the reference's own term)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(ref_features, dtype=np.float64)
    if len(y) > KID_REFERENCE:
        y = y[np.random.default_rng(seed).choice(len(y), KID_REFERENCE, replace=False)]
    k_yy = polynomial_kernel(y, y)
    m = len(y)
    yy_term = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return polynomial_kernel(x, x), polynomial_kernel(x, y).mean(1), float(yy_term)


def set_statistics(features: np.ndarray, ref_features, ref_mu, ref_sigma, seed: int = 0) -> dict:
    """The rows' values for one set (see the module docstring)."""
    features = np.asarray(features, dtype=np.float64)
    ref = Reference.of(ref_mu, ref_sigma)
    counts = index_counts(np.random.default_rng(seed), DRAWS, len(features))
    point = fid(features, ref)
    fid_low, fid_high = basic_interval(point, resampled_fids(features, counts, ref))
    k_xx, k_xy_mean, yy_term = kid_terms(features, ref_features, seed)
    kid_point = float(kid_with_weights(k_xx, k_xy_mean, yy_term, np.ones((1, len(features))))[0])
    kid_low, kid_high = basic_interval(kid_point, kid_with_weights(k_xx, k_xy_mean, yy_term, counts))
    return {"fid_ci_low": fid_low, "fid_ci_high": fid_high, "fid_infinity": fid_infinity(features, ref, seed),
            "kid": kid_point, "kid_ci_low": kid_low, "kid_ci_high": kid_high}
