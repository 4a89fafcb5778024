"""Claims: each kind's effect, interval and verdict (holds / contradicted / inconclusive / not evaluated)
on synthetic metrics and synthetic kept features; seeds are averaged; diverged sets are left out;
the defaults pick clean-fid FID on the classifier; a typo fails validation."""

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from diffrepro.claims import (COLUMNS, CONTRADICTED, HOLDS, INCONCLUSIVE, NOT_EVALUATED, FeatureSource, check_claims,
                              evaluate_claim, evaluate_claims)
from diffrepro.replications import load_replications
from diffrepro.schema import ConfigError
from diffrepro.intervals import Reference, fid
from diffrepro.metrics_table import COLUMNS as METRIC_COLUMNS
from diffrepro.stages import claims as claims_stage

ROOT = Path(__file__).resolve().parents[1]
PAPER = "p"
# a minimal replication of its own: the shipped files change as papers are added
TOY = {"paper": "toy", "title": "t", "citation": "c", "deviations": [], "experiments": {"eps_simple": {
    "description": "d", "input_scalings": {"smoke": ["symmetric"], "quick": ["symmetric", "unit"]},
    "schedule": {"name": "linear_beta"}, "parameterisation": {"name": "eps"}, "loss": {"name": "simple"},
    "samplers": [{"label": "ddim_eta0", "name": "ddim", "options": {"eta": 0.0}, "steps": [10, 20]},
                 {"label": "ddpm_large", "name": "ddpm_ancestral", "steps": [10]}]}}}


def row(value, experiment="e", sampler="s", steps=10, seed=0, nfe=None, metric="fid", library="clean-fid",
        extractor="fmnist-classifier", input_scaling="symmetric", paper=PAPER, n_samples=100):
    return {"paper": paper, "experiment": experiment, "input_scaling": input_scaling, "sampler": sampler,
            "sampler_name": "ddim", "steps": steps, "nfe": steps if nfe is None else nfe, "seed": seed,
            "n_samples": n_samples, "extractor": extractor, "library": library, "metric": metric, "value": value,
            "reference_set": "test", "config_hash": "h"}


def table(*rows):
    return pd.DataFrame(list(rows), columns=METRIC_COLUMNS)


def judge(metrics, check, factors=None, sources=None, **claim):
    return evaluate_claim(metrics, PAPER, {"id": "c", "title": "c", "text": "t", "source": "s", "check": check,
                                           **claim}, factors, sources, draws=300)


# ---- point estimates (no kept features): the interval is the point, the verdict its side -------

NEAR_VALUE = {"near_value": {"select": {"experiment": "roll"}, "target": 2.35, "abs_tol": 0.1}}
BOUND = dict(metric="bound_bits", library="none", extractor="none")


def test_near_value_holds_contradicted_missing():
    ok = judge(table(row(2.30, "roll", **BOUND)), NEAR_VALUE, **BOUND)
    assert ok["verdict"] == HOLDS and ok["effect"] == pytest.approx(-0.05) and ok["paper_effect"] == 2.35
    assert ok["side"] == "(-0.1, 0.1)"
    bad = judge(table(row(2.50, "roll", **BOUND)), NEAR_VALUE, **BOUND)
    assert bad["verdict"] == CONTRADICTED and "2.5 against the paper's 2.35 (±0.1)" in bad["evidence"]
    gone = judge(table(row(2.30, "other", **BOUND)), NEAR_VALUE, **BOUND)
    assert gone["verdict"] == NOT_EVALUATED and "experiment=roll" in gone["evidence"]


def test_a_standard_error_row_gives_a_scalar_its_interval():
    rows = [row(2.30, "roll", **BOUND), row(0.2, "roll", **{**BOUND, "metric": "bound_bits_se"})]
    result = judge(table(*rows), NEAR_VALUE, **BOUND)
    assert result["verdict"] == INCONCLUSIVE  # 2.30 ± 0.39 reaches past the ±0.1 band
    assert result["ci_low"] == pytest.approx(-0.05 - 1.96 * 0.2, abs=0.05)
    assert result["needed"].startswith("≈") or result["needed"] == "> 100×"


def test_near_value_names_the_metrics_present_when_the_default_metric_is_absent():
    result = judge(table(row(2.30, "roll", **BOUND)), NEAR_VALUE)  # defaults: fid by clean-fid
    assert result["verdict"] == NOT_EVALUATED
    assert "no fid rows by clean-fid" in result["evidence"] and "bound_bits/none/none" in result["evidence"]


def test_near_value_with_two_configurations_is_ambiguous_not_a_crash():
    result = judge(table(row(2.3, "roll", steps=10, **BOUND), row(2.4, "roll", steps=20, **BOUND)), NEAR_VALUE, **BOUND)
    assert result["verdict"] == NOT_EVALUATED and "matches 2 configurations" in result["evidence"]
    assert "steps=10" in result["evidence"] and "steps=20" in result["evidence"]


@pytest.mark.parametrize("tolerance,value,verdict", [
    ({"rel_tol": 0.1}, 2.35 * 1.09, HOLDS), ({"rel_tol": 0.1}, 2.35 * 1.11, CONTRADICTED),
    ({"within_factor": 2.0}, 2.35 / 1.9, HOLDS), ({"within_factor": 2.0}, 2.35 / 2.1, CONTRADICTED),
])
def test_near_value_relative_and_factor_tolerances(tolerance, value, verdict):
    check = {"near_value": {"select": {"experiment": "roll"}, "target": 2.35, **tolerance}}
    assert judge(table(row(value, "roll")), check)["verdict"] == verdict


BEST = {"best": {"select": {"sampler": "ancestral"}, "among": "experiment", "expected": "eps_simple",
                 "candidates": ["eps_simple", "mu_bound", "eps_bound"]}}


def test_best_effect_is_the_margin_over_the_runner_up():
    rows = [row(20.0, "eps_simple", "ancestral"), row(30.0, "mu_bound", "ancestral"),
            row(25.0, "eps_bound", "ancestral")]
    ok = judge(table(*rows), BEST)
    assert ok["verdict"] == HOLDS and ok["effect"] == 5.0
    rows[2] = row(19.0, "eps_bound", "ancestral")
    bad = judge(table(*rows), BEST)
    assert bad["verdict"] == CONTRADICTED and bad["effect"] == -1.0 and "eps_bound 19" in bad["evidence"]
    missing = judge(table(*rows[:1], row(30.0, "mu_bound", "ancestral")), BEST)
    assert missing["verdict"] == NOT_EVALUATED and "experiment=eps_bound" in missing["evidence"]


def test_a_missing_candidate_leaves_the_claim_unevaluated():
    result = judge(table(row(20.0, "eps_simple", "ancestral"), row(10.0, "mu_bound", "ancestral")), BEST)
    assert result["verdict"] == NOT_EVALUATED and "no rows for experiment=eps_bound" in result["evidence"]


def test_best_higher_is_better():
    rows = table(row(9.0, "eps_simple", "ancestral", metric="is"), row(8.0, "mu_bound", "ancestral", metric="is"),
                 row(7.0, "eps_bound", "ancestral", metric="is"))
    assert judge(rows, BEST, metric="is", lower_is_better=False)["verdict"] == HOLDS
    assert judge(rows, BEST, metric="is")["verdict"] == CONTRADICTED


ETA = {"better": {"select": {"steps": {"max": 50}}, "a": {"sampler": "eta0"}, "b": {"sampler": "eta1"},
                  "pair_on": ["steps"]}}


def _eta_rows(eta0, eta1, steps=(10, 20, 50, 100)):
    return [row(v, sampler="eta0", steps=s) for s, v in zip(steps, eta0)] + \
           [row(v, sampler="eta1", steps=s) for s, v in zip(steps, eta1)]


def test_better_effect_is_the_mean_margin_over_the_pairs_within_the_filter():
    # at 100 steps eta1 wins, but the claim is about steps <= 50
    result = judge(table(*_eta_rows([12.0, 8.0, 5.0, 5.0], [18.0, 9.0, 6.0, 4.0])), ETA)
    assert result["verdict"] == HOLDS and result["effect"] == pytest.approx(8.0 / 3)
    assert "eta0 12 vs eta1 18 at steps=10" in result["evidence"] and "steps=100" not in result["evidence"]
    reversed_ = judge(table(*_eta_rows([18.0, 9.0, 6.0], [12.0, 8.0, 5.0])), ETA)
    assert reversed_["verdict"] == CONTRADICTED and reversed_["effect"] == pytest.approx(-8.0 / 3)


def test_better_names_unpaired_rows():
    rows = _eta_rows([12.0, 8.0, 5.0], [18.0, 9.0, 6.0])
    rows = [r for r in rows if not (r["sampler"] == "eta1" and r["steps"] == 20)]
    result = judge(table(*rows), ETA)
    assert result["verdict"] == NOT_EVALUATED and "no rows for sampler=eta1 at steps=20" in result["evidence"]
    nothing = judge(table(*[r for r in rows if r["sampler"] == "eta0"]), ETA)
    assert nothing["verdict"] == NOT_EVALUATED and "no rows for sampler=eta1" in nothing["evidence"]


def test_better_by_factor():
    check = {"better": {"a": {"sampler": "tfree"}, "b": {"sampler": "ddim"}, "pair_on": ["steps"], "by_factor": 2.0}}
    assert judge(table(row(4.0, sampler="tfree"), row(22.0, sampler="ddim")), check)["verdict"] == HOLDS
    result = judge(table(row(12.0, sampler="tfree"), row(22.0, sampler="ddim")), check)
    assert result["verdict"] == CONTRADICTED and result["effect"] == -2.0 and "12 × 2 vs ddim 22" in result["evidence"]


def test_better_pairs_on_nfe():
    # Heun 10 steps = 19 NFE is matched with Euler 19 steps, not with Euler 10 steps
    check = {"better": {"a": {"sampler": "heun"}, "b": {"sampler": "euler"}, "pair_on": ["nfe"]}}
    rows = table(row(5.0, sampler="heun", steps=10, nfe=19), row(6.0, sampler="euler", steps=19),
                 row(4.0, sampler="euler", steps=10))
    result = judge(rows, check)
    assert result["verdict"] == NOT_EVALUATED and "sampler=heun at nfe=10" in result["evidence"]
    assert "heun 5 vs euler 6 at nfe=19" in result["evidence"]
    assert judge(table(*[r for _, r in rows.iterrows() if r["nfe"] == 19]), check)["verdict"] == HOLDS


def test_seeds_are_averaged():
    # seed 0 alone says eta0 wins (10 < 15); the means say it loses (20 > 17)
    rows = table(row(10.0, sampler="eta0", seed=0), row(30.0, sampler="eta0", seed=1),
                 row(15.0, sampler="eta1", seed=0), row(19.0, sampler="eta1", seed=1))
    result = judge(rows, ETA)
    assert result["verdict"] == CONTRADICTED and result["effect"] == -3.0 and result["seeds"] == "2"


def test_default_library_and_extractor_are_clean_fid_on_the_classifier():
    rows = table(row(10.0, sampler="eta0"), row(12.0, sampler="eta1"),
                 row(99.0, sampler="eta0", library="torch-fidelity"), row(99.0, sampler="eta0", extractor="inception"),
                 row(1.0, sampler="eta1", metric="kid"))
    assert judge(rows, ETA)["verdict"] == HOLDS
    assert judge(rows, ETA, library="torch-fidelity")["verdict"] == NOT_EVALUATED


def test_a_paper_scored_only_with_inception_is_judged_on_inception():
    # its CIFAR-10 experiments at paper scale: no classifier rows, so the claim reads Inception's
    rows = table(row(10.0, sampler="eta0", extractor="inception"), row(12.0, sampler="eta1", extractor="inception"),
                 row(1.0, sampler="eta0", extractor="none", metric="reconstruction_mse"))
    result = judge(rows, ETA)
    assert (result["verdict"], result["extractor"]) == (HOLDS, "inception")
    assert judge(rows, ETA, extractor="fmnist-classifier")["verdict"] == NOT_EVALUATED
    mixed = table(*rows.to_dict("records"), row(20.0, sampler="eta0"), row(12.0, sampler="eta1"))
    assert (judge(mixed, ETA)["verdict"], judge(mixed, ETA)["extractor"]) == (CONTRADICTED, "fmnist-classifier")


def test_near_is_a_ratio_inside_the_papers_band():
    check = {"near": {"a": {"experiment": "tfree", "sampler": "pred"}, "b": {"experiment": "cosine", "sampler": "ddim"},
                      "pair_on": ["steps"], "within_factor": 1.5}}
    ok = judge(table(row(3.88, "tfree", "pred"), row(3.29, "cosine", "ddim")), check)
    assert ok["verdict"] == HOLDS and ok["effect"] == pytest.approx(3.88 / 3.29) and ok["side"] == "(0.6667, 1.5)"
    far = judge(table(row(6.0, "tfree", "pred"), row(3.29, "cosine", "ddim")), check)
    assert far["verdict"] == CONTRADICTED and "within a factor 1.5" in far["evidence"]
    assert judge(table(row(3.88, "tfree", "pred")), check)["verdict"] == NOT_EVALUATED


TREND = {"trend": {"select": {"sampler": "eta0"}, "along": "steps", "direction": "decreasing"}}


def test_trend_effect_is_first_minus_last_in_the_claimed_direction():
    steps = (10, 20, 50, 100)
    ok = judge(table(*[row(v, sampler="eta0", steps=s) for s, v in zip(steps, [20.0, 15.0, 15.6, 14.0])]), TREND)
    assert ok["verdict"] == HOLDS and ok["effect"] == 6.0 and "20 (steps=10) → 15" in ok["evidence"]
    flat = judge(table(*[row(v, sampler="eta0", steps=s) for s, v in zip(steps, [20.0, 20.3, 20.2, 20.4])]), TREND)
    assert flat["verdict"] == CONTRADICTED and flat["effect"] == pytest.approx(-0.4)


def test_trend_needs_two_points_and_runs_per_group():
    one = judge(table(row(20.0, sampler="eta0")), TREND)
    assert one["verdict"] == NOT_EVALUATED and "needs 2 or more values of steps" in one["evidence"]
    check = {"trend": {"along": "steps", "direction": "decreasing", "per": ["sampler"]}}
    rows = table(row(9.0, sampler="x", steps=10), row(8.0, sampler="x", steps=20),
                 row(9.0, sampler="y", steps=10), row(10.0, sampler="y", steps=20))
    result = judge(rows, check)
    assert result["verdict"] == CONTRADICTED and "[sampler=x]" in result["evidence"] and "[sampler=y]" in result["evidence"]
    assert result["effect"] == -1.0  # the contradicted group decides


SHIFT = {"best_shifts": {"among": "b", "across": "resolution", "direction": "decreasing"}}


def _chen(fids):
    """fids: {(resolution, b): FID} as sweep experiments with factors."""
    factors = {f"r{r}_b{b}": {"resolution": r, "b": b} for r, b in fids}
    return table(*[row(v, f"r{r}_b{b}") for (r, b), v in fids.items()]), factors


def test_best_shifts_holds_contradicted_missing():
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 9.0, (64, 0.5): 7.0})
    ok = judge(rows, SHIFT, factors)
    assert ok["verdict"] == HOLDS and ok["effect"] == 0.5
    assert "1 (FID 5) at resolution=32" in ok["evidence"] and "0.5 (FID 7) at resolution=64" in ok["evidence"]
    rows, factors = _chen({(32, 1.0): 6.0, (32, 0.5): 5.0, (64, 1.0): 6.0, (64, 0.5): 7.0})
    assert judge(rows, SHIFT, factors)["verdict"] == CONTRADICTED
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 9.0})
    missing = judge(rows, SHIFT, factors)
    assert missing["verdict"] == NOT_EVALUATED and "no rows for b=0.5 at resolution=64" in missing["evidence"]


def test_factor_selection():
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 9.0, (64, 0.5): 7.0})
    check = {"best": {"select": {"factors": {"resolution": 64}}, "among": "b", "expected": 0.5}}
    assert judge(rows, check, factors)["verdict"] == HOLDS
    check["best"]["select"]["factors"]["resolution"] = 32
    assert judge(rows, check, factors)["verdict"] == CONTRADICTED


ORDER = {"ordering": {"select": {"experiment": "karras"}, "order": [
    {"sampler": "lms", "steps": 20}, {"sampler": "euler", "steps": 100}, {"sampler": "heun", "steps": 50}]}}


def test_ordering_effect_is_the_smallest_gap_between_neighbours():
    rows = [row(5.06, "karras", "lms", 20), row(5.23, "karras", "euler", 100), row(6.22, "karras", "heun", 50),
            row(5.61, "karras", "heun", 20)]
    ok = judge(table(*rows), ORDER)
    assert ok["verdict"] == HOLDS and ok["effect"] == pytest.approx(0.17)
    assert "lms steps=20 5.06 | euler steps=100 5.23" in ok["evidence"]
    rows[2] = row(0.97, "karras", "heun", 50)  # the retracted evaluation's ordering
    bad = judge(table(*rows), ORDER)
    assert bad["verdict"] == CONTRADICTED and bad["effect"] == pytest.approx(0.97 - 5.23)
    missing = judge(table(*rows[:2]), ORDER)
    assert missing["verdict"] == NOT_EVALUATED and "no rows for sampler=heun, steps=50" in missing["evidence"]


def test_steps_max_picks_each_runs_largest_step_count():
    # the headline experiment also runs a shorter chain; the others only the long one
    check = {"best": {"select": {"steps": "max"}, "among": "experiment", "expected": "eps"}}
    rows = table(row(3.0, "eps", steps=1000), row(2.0, "eps", steps=100), row(4.0, "mu", steps=1000),
                 row(1.0, "mu", steps=100, sampler="other"), row(5.0, "vlb", steps=500))
    ambiguous = judge(rows, {"best": {**check["best"], "select": {"sampler": "s"}}})
    assert ambiguous["verdict"] == NOT_EVALUATED and "matches 2 configurations" in ambiguous["evidence"]
    result = judge(rows, {"best": {**check["best"], "select": {"sampler": "s", "steps": "max"}}})
    assert result["verdict"] == HOLDS and result["effect"] == 1.0


def test_empty_metrics_never_crash():
    empty = table()
    for check in (NEAR_VALUE, BEST, ETA, TREND, SHIFT, ORDER):
        result = judge(empty, check)
        assert result["verdict"] == NOT_EVALUATED and "no rows at all" in result["evidence"]


def test_select_that_matches_nothing_is_named():
    result = judge(table(row(1.0)), TREND)
    assert result["verdict"] == NOT_EVALUATED and "no fid rows for sampler=eta0" in result["evidence"]


# ---- intervals from kept features ----------------------------------------------------------

D = 4
REF = Reference.of(np.zeros(D), np.eye(D))


def _features(tmp_path, sets, n=300):
    """Write Gaussian feature sets {(sampler, seed): (mean, noise seed)} where the evaluate stage keeps
    them; sets with the same noise seed share their draws (common random numbers). Returns metric rows."""
    rows = []
    for (sampler, seed), (mean, noise) in sets.items():
        x = np.random.default_rng(noise).standard_normal((n, D)) + mean
        folder = tmp_path / PAPER / "e" / "symmetric" / sampler / "10"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"seed{seed}.npz", features=x.astype(np.float32), image_shape=np.array([1, 32, 32]))
        rows.append(row(fid(x.astype(np.float32), REF), sampler=sampler, seed=seed, n_samples=n))
    return rows


def test_intervals_from_features_give_three_verdicts(tmp_path):
    sources = {"fmnist-classifier": FeatureSource(tmp_path, REF)}
    check = {"better": {"a": {"sampler": "a"}, "b": {"sampler": "b"}}}
    same = _features(tmp_path / "same", {("a", 0): (0.3, 1), ("b", 0): (0.3, 2)})
    result = judge(table(*same), check, sources={"fmnist-classifier": FeatureSource(tmp_path / "same", REF)})
    assert result["verdict"] == INCONCLUSIVE and result["ci_low"] < 0 < result["ci_high"] and result["needed"]
    assert result["paired"] == "paired"  # same seed, same image shape: the sets share their initial noise
    far = _features(tmp_path, {("a", 0): (0.2, 1), ("b", 0): (1.0, 2)})
    result = judge(table(*far), check, sources=sources)
    assert result["verdict"] == HOLDS and 0 < result["ci_low"] < result["effect"] < result["ci_high"]
    assert result["half_width"] == pytest.approx((result["ci_high"] - result["ci_low"]) / 2)
    flipped = judge(table(*far), {"better": {"a": {"sampler": "b"}, "b": {"sampler": "a"}}}, sources=sources)
    assert flipped["verdict"] == CONTRADICTED and flipped["ci_high"] < 0


def test_paired_sets_decide_what_unpaired_sets_cannot(tmp_path):
    """The same small shift of every image: paired by shared noise it is resolved, with independent
    noise the same two distributions leave the claim inconclusive."""
    check = {"better": {"a": {"sampler": "a"}, "b": {"sampler": "b"}}}
    shift = np.array([0.0, 0.15, 0, 0])
    paired = _features(tmp_path / "paired", {("a", 0): (0.3, 1), ("b", 0): (0.3 + shift, 1)})
    unpaired = _features(tmp_path / "unpaired", {("a", 0): (0.3, 1), ("b", 0): (0.3 + shift, 2)})
    with_pairs = judge(table(*paired), check, sources={"fmnist-classifier": FeatureSource(tmp_path / "paired", REF)})
    without = judge(table(*unpaired), check, sources={"fmnist-classifier": FeatureSource(tmp_path / "unpaired", REF)})
    assert with_pairs["half_width"] < without["half_width"] / 2


def test_diverged_sets_are_left_out_and_named(tmp_path):
    rows = _eta_rows([12.0, 8.0, 5.0], [18.0, 9.0, 6.0])
    bright = lambda value, **kw: row(value, metric="bright_fraction", extractor="pixels", library="scipy", **kw)
    rows += [bright(0.011, paper="real_data", experiment="train_split", sampler="none", steps=0),
             bright(0.27, sampler="eta1", steps=20), bright(0.02, sampler="eta0", steps=20)]
    result = judge(table(*rows), ETA)
    assert result["verdict"] == NOT_EVALUATED and "e/symmetric/eta1/20/seed0 (bright pixels 27.0% > 16.5%)" \
        in result["excluded"]
    assert "no rows for sampler=eta1 at steps=20" in result["evidence"]


# ---- validation, label checks and the stage --------------------------------------------------

GOOD_CLAIM = {"id": "eta0_beats_ancestral", "title": "eta 0 beats ancestral", "text": "t", "source": "s",
              "check": {"better": {"a": {"sampler": "ddim_eta0"}, "b": {"sampler": "ddpm_large"}}}}


def _replications(tmp_path, claims):
    d = tmp_path / "replications"
    d.mkdir(exist_ok=True)
    (d / "toy.yaml").write_text(yaml.safe_dump({**copy.deepcopy(TOY), "claims": claims}))
    return d


BAD_CLAIMS = [
    ({"check": {"better": {"a": {"sampler": "x"}, "b": {"sampler": "y"}, "selct": {}}}},
     "claims.0.check.better", "selct"),
    ({"check": {"bettr": {"a": {}, "b": {}}}}, "claims.0.check", "bettr"),
    ({"metric": "fdi"}, "claims.0.metric", "fid, kid"),
    ({"lower_is_beter": True}, "claims.0", "lower_is_beter"),
    ({"check": {"better": {"a": {"samplr": "x"}, "b": {}}}}, "claims.0.check.better.a", "samplr"),
    ({"check": {"trend": {"along": "steps", "direction": "down"}}}, "claims.0.check.trend.direction", "decreasing"),
    ({"check": {"near_value": {"select": {}, "target": 1.0}}}, "claims.0.check.near_value", "abs_tol"),
    ({"check": {"better": {"a": {"steps": {"mx": 50}}, "b": {}}}}, "claims.0.check.better.a.steps", "mx"),
]


@pytest.mark.parametrize("change,key,hint", BAD_CLAIMS, ids=[c[2] for c in BAD_CLAIMS])
def test_schema_typo_in_a_claim_names_the_key(tmp_path, change, key, hint):
    claim = {**copy.deepcopy(GOOD_CLAIM), **change}
    with pytest.raises(ConfigError) as err:
        load_replications(_replications(tmp_path, [claim]))
    msg = str(err.value)
    assert "\n" not in msg and "toy.yaml" in msg and key in msg and hint in msg, msg


@pytest.mark.parametrize("change,hint", [
    ({"a": {"sampler": "ddim_eta_0"}}, "claims.0.check.better.a.sampler: sampler 'ddim_eta_0' is not defined"),
    ({"a": {"experiment": ["eps_simple", "nope"]}}, "experiment 'nope' is not defined (defined: eps_simple)"),
    ({"b": {"input_scaling": "centered"}}, "input_scaling 'centered' is not defined (defined: symmetric, unit)"),
    ({"pair_on": ["stepz"]}, "claims.0.check.better.pair_on: 'stepz' is neither a metrics column nor a sweep factor"),
    ({"select": {"factors": {"b": 0.5}}}, "'b' is not a sweep factor"),
])
def test_undefined_names_in_a_claim_are_rejected(tmp_path, change, hint):
    claim = copy.deepcopy(GOOD_CLAIM)
    claim["check"]["better"].update(change)
    replications = load_replications(_replications(tmp_path, [claim]))
    with pytest.raises(ConfigError, match="toy.yaml: ") as err:
        check_claims(replications)
    assert hint in str(err.value)


def test_duplicate_claim_ids_rejected(tmp_path):
    replications = load_replications(_replications(tmp_path, [GOOD_CLAIM, GOOD_CLAIM]))
    with pytest.raises(ConfigError, match="claims.1.id: duplicate claim id"):
        check_claims(replications)


def test_shipped_claims_are_valid():
    replications = load_replications(ROOT / "replications")
    check_claims(replications)
    empty = evaluate_claims(table(), replications)
    assert list(empty.columns) == COLUMNS and set(empty["verdict"]) <= {NOT_EVALUATED}


def test_stage_writes_claims_csv(tmp_path):
    d = _replications(tmp_path, [GOOD_CLAIM, {**GOOD_CLAIM, "id": "missing", "check": {"better": {
        "a": {"sampler": "ddim_eta0"}, "b": {"sampler": "ddpm_large"}, "pair_on": ["steps"]}}}])
    metrics = table(row(8.0, "eps_simple", "ddim_eta0", paper="toy"),
                    row(9.0, "eps_simple", "ddpm_large", steps=100, paper="toy"))
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    np.savez(tmp_path / "reference.npz", mu=np.zeros(D), sigma=np.eye(D))
    out = tmp_path / "out" / "claims.csv"
    claims_stage.main(["--metrics", str(tmp_path / "metrics.csv"), "--replications", str(d), "--out", str(out),
                       "--reference", str(tmp_path / "reference.npz"), "--draws", "50"])
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result.columns) == COLUMNS and list(result["claim"]) == ["eta0_beats_ancestral", "missing"]
    assert list(result["verdict"]) == [HOLDS, NOT_EVALUATED]
    assert "no rows for sampler=ddpm_large at steps=10" in result["evidence"][1]
    assert "no interval" in result["evidence"][0]  # no kept features here
    assert math.isclose(float(result["effect"][0]), 1.0) and not list(out.parent.glob("*.part*"))


def test_a_noise_allowance_is_rejected_with_what_replaced_it(tmp_path):
    claim = {**copy.deepcopy(GOOD_CLAIM), "check": {"trend": {"along": "steps", "direction": "decreasing",
                                                              "noise": 0.5}}}
    with pytest.raises(ConfigError) as err:
        load_replications(_replications(tmp_path, [claim]))
    msg = str(err.value)
    assert "\n" not in msg and "toy.yaml" in msg and "claims.0.check.trend.noise" in msg
    assert "95% confidence interval" in msg
