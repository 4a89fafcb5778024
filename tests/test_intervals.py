"""Bootstrap intervals of FID differences on synthetic sets whose true FID is known.

Features are Gaussian with identity covariance and the reference is N(0, I) held fixed, so a set
with mean m has FID |m|^2 at infinite sample size, and two such sets have the same small-sample
bias: the true difference of their FIDs is |m_b|^2 - |m_a|^2.
"""

import numpy as np
import pytest
from cleanfid.fid import frechet_distance

from diffrepro.intervals import Reference, basic_interval, bootstrap_values, fid

D, N = 4, 200
REF = Reference.of(np.zeros(D), np.eye(D))


def gaussian_set(rng, mean, n=N):
    return rng.standard_normal((n, D)) + mean


def test_frechet_distance_equals_clean_fids_sqrtm_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    r = rng.standard_normal((500, 6)) * 2 + 1
    mu_r, sigma_r = r.mean(0), np.cov(r, rowvar=False)
    ours = fid(a, Reference.of(mu_r, sigma_r))
    theirs = frechet_distance(a.mean(0), np.cov(a, rowvar=False), mu_r, sigma_r)
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_resampled_fids_of_the_identity_resample_equal_the_point():
    rng = np.random.default_rng(1)
    x = gaussian_set(rng, 0.5)
    values = bootstrap_values({"a": {0: x}}, REF, draws=50, seed=0)["a"]
    assert values.shape == (50,) and np.all(np.isfinite(values))
    from diffrepro.intervals import resampled_fids
    assert resampled_fids(x, np.ones((1, N), dtype=int), REF)[0] == pytest.approx(fid(x, REF), rel=1e-10)


def simulate(effect_sq, draws=200, replications=200, paired=False, seed=0, base=0.3):
    """Intervals of FID(b) - FID(a) over simulated replications; a has mean base e1 (FID base^2),
    b's mean makes the true difference `effect_sq`."""
    rng = np.random.default_rng(seed)
    m_a = np.zeros(D)
    m_a[0] = base
    m_b = np.zeros(D)
    m_b[1] = np.sqrt(base ** 2 + effect_sq)
    intervals = []
    for r in range(replications):
        a = gaussian_set(rng, m_a)
        # paired: b's images come from the same noise as a's (common random numbers)
        b = a - m_a + m_b if paired else gaussian_set(rng, m_b)
        values = bootstrap_values({"a": {0: a}, "b": {0: b}}, REF, draws=draws, seed=r)
        point = fid(b, REF) - fid(a, REF)
        intervals.append(basic_interval(point, values["b"] - values["a"]))
    return np.array(intervals)


def verdicts(intervals):
    holds = intervals[:, 0] > 0
    contradicted = intervals[:, 1] < 0
    return holds.mean(), contradicted.mean(), 1 - holds.mean() - contradicted.mean()


def test_interval_covers_the_true_difference_90_to_99_percent():
    true = 0.1
    intervals = simulate(true)
    coverage = np.mean((intervals[:, 0] <= true) & (true <= intervals[:, 1]))
    print(f"coverage {coverage:.3f} over {len(intervals)} replications")
    assert 0.90 <= coverage <= 0.99


def test_no_difference_is_inconclusive_at_least_90_percent():
    holds, contradicted, inconclusive = verdicts(simulate(0.0, seed=1))
    assert inconclusive >= 0.90


def test_large_effect_holds_and_reversed_effect_is_contradicted():
    holds, _, _ = verdicts(simulate(0.5, replications=40, seed=2))
    assert holds >= 0.95
    _, contradicted, _ = verdicts(simulate(-0.75, replications=40, seed=3, base=1.0))  # FID(b) < FID(a)
    assert contradicted >= 0.95


def test_pairing_by_shared_noise_narrows_the_interval():
    rng = np.random.default_rng(4)
    a = gaussian_set(rng, np.array([0.3, 0, 0, 0]))
    b = a + np.array([0, 0.2, 0, 0])  # the same images moved: a sampler change on shared noise
    shuffled = b[rng.permutation(N)]  # the same set with its pairing to a destroyed
    point = fid(b, REF) - fid(a, REF)
    paired = bootstrap_values({"a": {0: a}, "b": {0: b}}, REF, draws=400)
    unpaired = bootstrap_values({"a": {0: a}, "b": {0: shuffled}}, REF, draws=400)
    width_paired = np.subtract(*basic_interval(point, paired["b"] - paired["a"])[::-1])
    width_unpaired = np.subtract(*basic_interval(point, unpaired["b"] - unpaired["a"])[::-1])
    assert width_paired < width_unpaired / 2


def test_replicate_networks_widen_the_interval():
    """Each seed's network adds its own offset to the set's mean: with three replicate networks the
    interval also carries the spread between networks, which one network cannot show."""
    rng = np.random.default_rng(5)
    offsets = {s: rng.normal(0, 0.3, D) for s in range(3)}
    sets_a = {s: gaussian_set(rng, offsets[s]) for s in range(3)}
    sets_b = {s: gaussian_set(rng, offsets[s] + 0.1) for s in range(3)}
    three = bootstrap_values({"a": sets_a, "b": sets_b}, REF, draws=400)
    one = bootstrap_values({"a": {0: sets_a[0]}, "b": {0: sets_b[0]}}, REF, draws=400)
    assert np.std(three["a"]) > np.std(one["a"])


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    from diffrepro.set_statistics import kid_terms, kid_with_weights
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((30, D)) + 0.5, rng.standard_normal((40, D))
    k = lambda a, b: (a @ b.T / D + 1) ** 3
    n, m = len(x), len(y)
    by_hand = ((k(x, x).sum() - np.trace(k(x, x))) / (n * (n - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
               - 2 * k(x, y).mean())
    assert kid_with_weights(*kid_terms(x, y), np.ones((1, n)))[0] == pytest.approx(by_hand, rel=1e-12)
    # a resample is the same formula over positions: image 0 drawn twice, image 1 never
    counts = np.ones((1, n), dtype=int)
    counts[0, 0], counts[0, 1] = 2, 0
    z = np.concatenate([x[:1], x[:1], x[2:]])
    resampled = ((k(z, z).sum() - np.trace(k(z, z))) / (n * (n - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
                 - 2 * k(z, y).mean())
    assert kid_with_weights(*kid_terms(x, y), counts)[0] == pytest.approx(resampled, rel=1e-12)


def test_fid_infinity_removes_most_of_the_small_sample_bias():
    """FID of 32-d N(m, I) sets of 400 against N(0, I) is biased up by about d/n; the extrapolation
    to infinitely many samples lands closer to the true |m|^2 = 1 on average."""
    from diffrepro.set_statistics import fid_infinity
    rng, d = np.random.default_rng(7), 32
    ref = Reference.of(np.zeros(d), np.eye(d))
    mean = np.eye(d)[0]
    sets = [rng.standard_normal((400, d)) + mean for _ in range(10)]
    at_n = np.mean([fid(x, ref) for x in sets])
    extrapolated = np.mean([fid_infinity(x, ref, seed=i) for i, x in enumerate(sets)])
    print(f"FID at n = 400: {at_n:.3f}, FID-infinity {extrapolated:.3f}, true 1")
    assert abs(extrapolated - 1.0) < 0.5 * abs(at_n - 1.0)


def test_set_statistics_rows_bracket_their_points():
    from diffrepro.set_statistics import set_statistics
    rng = np.random.default_rng(8)
    x, ref = gaussian_set(rng, np.array([0.5, 0, 0, 0]), n=300), rng.standard_normal((3000, D))
    values = set_statistics(x, ref, ref.mean(0), np.cov(ref, rowvar=False))
    point = fid(x, Reference.of(ref.mean(0), np.cov(ref, rowvar=False)))
    assert values["fid_ci_low"] < point < values["fid_ci_high"]
    assert values["kid_ci_low"] < values["kid"] < values["kid_ci_high"]
