"""Claims: each kind holds, fails, and is "not evaluated" (naming the missing rows) on synthetic metrics;
seeds are averaged; the defaults pick clean-fid FID on the classifier; a typo fails validation."""

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from diffrepro.claims import COLUMNS, NOT_EVALUATED, check_claims, evaluate_claim, evaluate_claims
from diffrepro.config import ConfigError, load_replications
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
        extractor="fmnist-classifier", input_scaling="symmetric", paper=PAPER):
    return {"paper": paper, "experiment": experiment, "input_scaling": input_scaling, "sampler": sampler,
            "sampler_name": "ddim", "steps": steps, "nfe": steps if nfe is None else nfe, "seed": seed,
            "n_samples": 100, "extractor": extractor, "library": library, "metric": metric, "value": value,
            "reference_set": "test", "config_hash": "h"}


def table(*rows):
    return pd.DataFrame(list(rows), columns=METRIC_COLUMNS)


def judge(metrics, check, factors=None, **claim):
    return evaluate_claim(metrics, PAPER, {"id": "c", "text": "t", "source": "s", "check": check, **claim}, factors)


# ---- near_value ----------------------------------------------------------------------------

NEAR_VALUE = {"near_value": {"select": {"experiment": "roll"}, "target": 2.35, "abs_tol": 0.1}}
BOUND = dict(metric="bound_bits", library="none", extractor="none")


def test_near_value_holds_fails_missing():
    ok = judge(table(row(2.30, "roll", **BOUND)), NEAR_VALUE, **BOUND)
    assert ok["holds"] == "true" and ok["ours"] == 2.30 and ok["reference"] == 2.35
    bad = judge(table(row(2.50, "roll", **BOUND)), NEAR_VALUE, **BOUND)
    assert bad["holds"] == "false" and "2.5 not within ±0.1 of 2.35" in bad["evidence"]
    gone = judge(table(row(2.30, "other", **BOUND)), NEAR_VALUE, **BOUND)
    assert gone["holds"] == NOT_EVALUATED and "experiment=roll" in gone["evidence"]


def test_near_value_names_the_metrics_present_when_the_default_metric_is_absent():
    result = judge(table(row(2.30, "roll", **BOUND)), NEAR_VALUE)  # defaults: fid by clean-fid
    assert result["holds"] == NOT_EVALUATED
    assert "no fid rows by clean-fid" in result["evidence"] and "bound_bits/none/none" in result["evidence"]


def test_near_value_with_two_configurations_is_ambiguous_not_a_crash():
    result = judge(table(row(2.3, "roll", steps=10, **BOUND), row(2.4, "roll", steps=20, **BOUND)), NEAR_VALUE, **BOUND)
    assert result["holds"] == NOT_EVALUATED and "matches 2 configurations" in result["evidence"]
    assert "steps=10" in result["evidence"] and "steps=20" in result["evidence"]


@pytest.mark.parametrize("tolerance,value,holds", [
    ({"rel_tol": 0.1}, 2.35 * 1.09, "true"), ({"rel_tol": 0.1}, 2.35 * 1.11, "false"),
    ({"within_factor": 2.0}, 2.35 / 1.9, "true"), ({"within_factor": 2.0}, 2.35 / 2.1, "false"),
])
def test_near_value_relative_and_factor_tolerances(tolerance, value, holds):
    check = {"near_value": {"select": {"experiment": "roll"}, "target": 2.35, **tolerance}}
    assert judge(table(row(value, "roll")), check)["holds"] == holds


# ---- best ----------------------------------------------------------------------------------

BEST = {"best": {"select": {"sampler": "ancestral"}, "among": "experiment", "expected": "eps_simple",
                 "candidates": ["eps_simple", "mu_bound", "eps_bound"]}}


def test_best_holds_fails_missing():
    rows = [row(20.0, "eps_simple", "ancestral"), row(30.0, "mu_bound", "ancestral"),
            row(25.0, "eps_bound", "ancestral")]
    ok = judge(table(*rows), BEST)
    assert ok["holds"] == "true" and (ok["ours"], ok["compared_with"]) == (20.0, 25.0)
    rows[2] = row(19.0, "eps_bound", "ancestral")
    bad = judge(table(*rows), BEST)
    assert bad["holds"] == "false" and "does not beat eps_bound 19" in bad["evidence"]
    missing = judge(table(*rows[:1], row(30.0, "mu_bound", "ancestral")), BEST)
    assert missing["holds"] == NOT_EVALUATED and "experiment=eps_bound" in missing["evidence"]


def test_best_is_false_when_beaten_even_if_a_candidate_is_missing():
    result = judge(table(row(20.0, "eps_simple", "ancestral"), row(10.0, "mu_bound", "ancestral")), BEST)
    assert result["holds"] == "false" and "also no rows for experiment=eps_bound" in result["evidence"]


def test_best_higher_is_better():
    rows = table(row(9.0, "eps_simple", "ancestral", metric="is"), row(8.0, "mu_bound", "ancestral", metric="is"),
                 row(7.0, "eps_bound", "ancestral", metric="is"))
    assert judge(rows, BEST, metric="is", lower_is_better=False)["holds"] == "true"
    assert judge(rows, BEST, metric="is")["holds"] == "false"


# ---- better (paired) -----------------------------------------------------------------------

ETA = {"better": {"select": {"steps": {"max": 50}}, "a": {"sampler": "eta0"}, "b": {"sampler": "eta1"},
                  "pair_on": ["steps"]}}


def _eta_rows(eta0, eta1, steps=(10, 20, 50, 100)):
    return [row(v, sampler="eta0", steps=s) for s, v in zip(steps, eta0)] + \
           [row(v, sampler="eta1", steps=s) for s, v in zip(steps, eta1)]


def test_better_holds_at_every_paired_step_count_within_the_filter():
    # at 100 steps eta1 wins, but the claim is about steps <= 50
    result = judge(table(*_eta_rows([12.0, 8.0, 5.0, 5.0], [18.0, 9.0, 6.0, 4.0])), ETA)
    assert result["holds"] == "true"
    assert "eta0 FID 12 < eta1 18 at steps=10" in result["evidence"] and "steps=100" not in result["evidence"]
    assert (result["ours"], result["compared_with"]) == (8.0, 9.0)  # the closest pair decides


def test_better_fails_on_one_pair():
    result = judge(table(*_eta_rows([12.0, 9.5, 5.0], [18.0, 9.0, 6.0])), ETA)
    assert result["holds"] == "false" and "eta0 FID 9.5 >= eta1 9 at steps=20" in result["evidence"]
    assert (result["ours"], result["compared_with"]) == (9.5, 9.0)


def test_better_names_unpaired_rows():
    rows = _eta_rows([12.0, 8.0, 5.0], [18.0, 9.0, 6.0])
    rows = [r for r in rows if not (r["sampler"] == "eta1" and r["steps"] == 20)]
    result = judge(table(*rows), ETA)
    assert result["holds"] == NOT_EVALUATED and "no rows for sampler=eta1 at steps=20" in result["evidence"]
    nothing = judge(table(*[r for r in rows if r["sampler"] == "eta0"]), ETA)
    assert nothing["holds"] == NOT_EVALUATED and "no rows for sampler=eta1" in nothing["evidence"]


def test_better_by_factor():
    check = {"better": {"a": {"sampler": "tfree"}, "b": {"sampler": "ddim"}, "pair_on": ["steps"], "by_factor": 2.0}}
    assert judge(table(row(4.0, sampler="tfree"), row(22.0, sampler="ddim")), check)["holds"] == "true"
    result = judge(table(row(12.0, sampler="tfree"), row(22.0, sampler="ddim")), check)
    assert result["holds"] == "false" and "12 × 2 >= ddim 22" in result["evidence"]


def test_better_pairs_on_nfe():
    # Heun 10 steps = 19 NFE is matched with Euler 19 steps, not with Euler 10 steps
    check = {"better": {"a": {"sampler": "heun"}, "b": {"sampler": "euler"}, "pair_on": ["nfe"]}}
    rows = table(row(5.0, sampler="heun", steps=10, nfe=19), row(6.0, sampler="euler", steps=19),
                 row(4.0, sampler="euler", steps=10))
    result = judge(rows, check)
    assert result["holds"] == NOT_EVALUATED and "sampler=heun at nfe=10" in result["evidence"]
    assert "heun FID 5 < euler 6 at nfe=19" in result["evidence"]
    assert judge(table(*[r for _, r in rows.iterrows() if r["nfe"] == 19]), check)["holds"] == "true"


def test_seeds_are_averaged():
    # seed 0 alone says eta0 wins (10 < 15); the means say it loses (20 > 17)
    rows = table(row(10.0, sampler="eta0", seed=0), row(30.0, sampler="eta0", seed=1),
                 row(15.0, sampler="eta1", seed=0), row(19.0, sampler="eta1", seed=1))
    result = judge(rows, ETA)
    assert result["holds"] == "false" and (result["ours"], result["compared_with"]) == (20.0, 17.0)
    assert result["seeds"] == "2"


def test_default_library_and_extractor_are_clean_fid_on_the_classifier():
    rows = table(row(10.0, sampler="eta0"), row(12.0, sampler="eta1"),
                 row(99.0, sampler="eta0", library="torch-fidelity"), row(99.0, sampler="eta0", extractor="inception"),
                 row(1.0, sampler="eta1", metric="kid"))
    assert judge(rows, ETA)["holds"] == "true"
    assert judge(rows, ETA, library="torch-fidelity")["holds"] == NOT_EVALUATED


def test_a_paper_scored_only_with_inception_is_judged_on_inception():
    # its CIFAR-10 experiments at paper scale: no classifier rows, so the claim reads Inception's
    rows = table(row(10.0, sampler="eta0", extractor="inception"), row(12.0, sampler="eta1", extractor="inception"),
                 row(1.0, sampler="eta0", extractor="none", metric="reconstruction_mse"))
    result = judge(rows, ETA)
    assert (result["holds"], result["extractor"]) == ("true", "inception")
    assert judge(rows, ETA, extractor="fmnist-classifier")["holds"] == NOT_EVALUATED
    mixed = table(*rows.to_dict("records"), row(20.0, sampler="eta0"), row(12.0, sampler="eta1"))
    assert (judge(mixed, ETA)["holds"], judge(mixed, ETA)["extractor"]) == ("false", "fmnist-classifier")


# ---- near (paired) -------------------------------------------------------------------------

def test_near_pairs_across_experiments():
    check = {"near": {"a": {"experiment": "tfree", "sampler": "pred"}, "b": {"experiment": "cosine", "sampler": "ddim"},
                      "pair_on": ["steps"], "within_factor": 1.5}}
    assert judge(table(row(3.88, "tfree", "pred"), row(3.29, "cosine", "ddim")), check)["holds"] == "true"
    far = judge(table(row(6.0, "tfree", "pred"), row(3.29, "cosine", "ddim")), check)
    assert far["holds"] == "false" and "not within a factor 1.5" in far["evidence"]
    assert judge(table(row(3.88, "tfree", "pred")), check)["holds"] == NOT_EVALUATED


# ---- trend ---------------------------------------------------------------------------------

TREND = {"trend": {"select": {"sampler": "eta0"}, "along": "steps", "direction": "decreasing", "noise": 0.5}}


def test_trend_tolerates_noise_but_not_more():
    steps = (10, 20, 50, 100)
    ok = judge(table(*[row(v, sampler="eta0", steps=s) for s, v in zip(steps, [20.0, 15.0, 15.4, 14.0])]), TREND)
    assert ok["holds"] == "true" and (ok["ours"], ok["compared_with"]) == (14.0, 20.0)
    bad = judge(table(*[row(v, sampler="eta0", steps=s) for s, v in zip(steps, [20.0, 15.0, 15.6, 14.0])]), TREND)
    assert bad["holds"] == "false" and "rises by 0.6 from steps=20 to steps=50" in bad["evidence"]
    flat = judge(table(*[row(v, sampler="eta0", steps=s) for s, v in zip(steps, [20.0, 20.3, 20.2, 20.4])]), TREND)
    assert flat["holds"] == "false" and "not decreasing overall" in flat["evidence"]


def test_trend_needs_two_points_and_runs_per_group():
    one = judge(table(row(20.0, sampler="eta0")), TREND)
    assert one["holds"] == NOT_EVALUATED and "needs 2 or more values of steps" in one["evidence"]
    check = {"trend": {"along": "steps", "direction": "decreasing", "per": ["sampler"]}}
    rows = table(row(9.0, sampler="x", steps=10), row(8.0, sampler="x", steps=20),
                 row(9.0, sampler="y", steps=10), row(10.0, sampler="y", steps=20))
    result = judge(rows, check)
    assert result["holds"] == "false" and "[sampler=x]" in result["evidence"] and "[sampler=y]" in result["evidence"]
    assert (result["ours"], result["compared_with"]) == (10.0, 9.0)  # the failing group decides


# ---- best_shifts ---------------------------------------------------------------------------

SHIFT = {"best_shifts": {"among": "b", "across": "resolution", "direction": "decreasing"}}


def _chen(fids):
    """fids: {(resolution, b): FID} as sweep experiments with factors."""
    factors = {f"r{r}_b{b}": {"resolution": r, "b": b} for r, b in fids}
    return table(*[row(v, f"r{r}_b{b}") for (r, b), v in fids.items()]), factors


def test_best_shifts_holds_fails_missing():
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 9.0, (64, 0.5): 7.0})
    ok = judge(rows, SHIFT, factors)
    assert ok["holds"] == "true" and (ok["ours"], ok["compared_with"]) == (0.5, 1.0)
    assert "1 (FID 5) at resolution=32" in ok["evidence"] and "0.5 (FID 7) at resolution=64" in ok["evidence"]
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 6.0, (64, 0.5): 7.0})
    assert judge(rows, SHIFT, factors)["holds"] == "false"
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 9.0})
    missing = judge(rows, SHIFT, factors)
    assert missing["holds"] == NOT_EVALUATED and "no rows for b=0.5 at resolution=64" in missing["evidence"]


def test_factor_selection():
    rows, factors = _chen({(32, 1.0): 5.0, (32, 0.5): 6.0, (64, 1.0): 9.0, (64, 0.5): 7.0})
    check = {"best": {"select": {"factors": {"resolution": 64}}, "among": "b", "expected": 0.5}}
    assert judge(rows, check, factors)["holds"] == "true"
    check["best"]["select"]["factors"]["resolution"] = 32
    assert judge(rows, check, factors)["holds"] == "false"


# ---- ordering ------------------------------------------------------------------------------

ORDER = {"ordering": {"select": {"experiment": "karras"}, "noise": 0.1, "order": [
    {"sampler": "lms", "steps": 20}, {"sampler": "euler", "steps": 100}, {"sampler": "heun", "steps": 50}]}}


def test_ordering_holds_fails_missing():
    rows = [row(5.06, "karras", "lms", 20), row(5.23, "karras", "euler", 100), row(6.22, "karras", "heun", 50),
            row(5.61, "karras", "heun", 20)]
    ok = judge(table(*rows), ORDER)
    assert ok["holds"] == "true" and "lms steps=20 FID 5.06 ahead of euler steps=100 5.23" in ok["evidence"]
    rows[0] = row(5.30, "karras", "lms", 20)  # an inversion of 0.07 is within the noise
    assert judge(table(*rows), ORDER)["holds"] == "true"
    rows[2] = row(0.97, "karras", "heun", 50)  # the retracted evaluation's ordering
    bad = judge(table(*rows), ORDER)
    assert bad["holds"] == "false" and "euler steps=100 FID 5.23 behind heun steps=50 0.97" in bad["evidence"]
    missing = judge(table(*rows[:2]), ORDER)
    assert missing["holds"] == NOT_EVALUATED and "no rows for sampler=heun, steps=50" in missing["evidence"]


def test_steps_max_picks_each_runs_largest_step_count():
    # the headline experiment also runs a shorter chain; the others only the long one
    check = {"best": {"select": {"steps": "max"}, "among": "experiment", "expected": "eps"}}
    rows = table(row(3.0, "eps", steps=1000), row(2.0, "eps", steps=100), row(4.0, "mu", steps=1000),
                 row(1.0, "mu", steps=100, sampler="other"), row(5.0, "vlb", steps=500))
    ambiguous = judge(rows, {"best": {**check["best"], "select": {"sampler": "s"}}})
    assert ambiguous["holds"] == NOT_EVALUATED and "matches 2 configurations" in ambiguous["evidence"]
    result = judge(rows, {"best": {**check["best"], "select": {"sampler": "s", "steps": "max"}}})
    assert result["holds"] == "true" and (result["ours"], result["compared_with"]) == (3.0, 4.0)


def test_empty_metrics_never_crash():
    empty = table()
    for check in (NEAR_VALUE, BEST, ETA, TREND, SHIFT, ORDER):
        result = judge(empty, check)
        assert result["holds"] == NOT_EVALUATED and "no rows at all" in result["evidence"]


def test_select_that_matches_nothing_is_named():
    result = judge(table(row(1.0)), TREND)
    assert result["holds"] == NOT_EVALUATED and "no fid (clean-fid, fmnist-classifier) rows for sampler=eta0" \
        in result["evidence"]


# ---- validation, label checks and the stage --------------------------------------------------

GOOD_CLAIM = {"id": "eta0_beats_ancestral", "text": "t", "source": "s",
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
    assert list(empty.columns) == COLUMNS and set(empty["holds"]) <= {NOT_EVALUATED}


def test_stage_writes_claims_csv(tmp_path):
    d = _replications(tmp_path, [GOOD_CLAIM, {**GOOD_CLAIM, "id": "missing", "check": {"better": {
        "a": {"sampler": "ddim_eta0"}, "b": {"sampler": "ddpm_large"}, "pair_on": ["steps"]}}}])
    metrics = table(row(8.0, "eps_simple", "ddim_eta0", paper="toy"),
                    row(9.0, "eps_simple", "ddpm_large", steps=100, paper="toy"))
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    out = tmp_path / "out" / "claims.csv"
    claims_stage.main(["--metrics", str(tmp_path / "metrics.csv"), "--replications", str(d), "--out", str(out)])
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result.columns) == COLUMNS and list(result["claim"]) == ["eta0_beats_ancestral", "missing"]
    assert list(result["holds"]) == ["true", NOT_EVALUATED]
    assert "no rows for sampler=ddpm_large at steps=10" in result["evidence"][1]
    assert math.isclose(float(result["ours"][0]), 8.0) and not list(out.parent.glob("*.part*"))
