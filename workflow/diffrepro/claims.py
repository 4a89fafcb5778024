"""Paper claims checked on metrics.csv: a small declarative vocabulary, each check an effect with a
95% confidence interval and one of three verdicts.

A claim (`claims:` in replications/<paper>.yaml, schema `$defs/claim`) picks one metric
(default: FID by clean-fid on the Fashion-MNIST classifier's features), averages it over seeds
per configuration (experiment, input_scaling, sampler, steps, nfe), and computes one effect,
positive on the paper's side:

  near_value   the configuration's value; the paper's side is the tolerance band around the target
  best         the margin by which `expected` beats the best of the others
  better       a's margin over b (b - a for a lower-is-better metric), averaged over the pairs
               matched on `pair_on`
  near         a / b (within_factor) or a - b (abs_tol, rel_tol), averaged over the pairs; the
               paper's side is the tolerance band
  trend        last minus first along `along`, signed so that the claimed direction is positive
  best_shifts  how far the best value of `among` moves (in its own units) from the smallest to the
               largest `across`, signed likewise
  ordering     the smallest gap between neighbours of the claimed order (all in order: positive)

The interval comes from bootstrap draws of every configuration's value (diffrepro.intervals:
replicate networks, then images, resampled; pairs of sets that share their initial noise stay
paired), or, for a scalar with a standard error row (`<metric>_se`), from the normal
approximation. The verdict is `holds` when the interval lies inside the paper's side,
`contradicted` when it lies wholly outside, `inconclusive` otherwise, and `not evaluated` when
rows it needs are absent (named). A check run `per` group holds when every group holds and is
contradicted when any group is. Sets whose pixels show divergence (bright-pixel share above
DIVERGED_FACTOR times the real images') are left out and named.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import intervals
from .schema import ConfigError

CONFIG_COLUMNS = ["experiment", "input_scaling", "sampler", "steps", "nfe"]
NAME_COLUMNS = ("experiment", "input_scaling", "sampler")
EXTREMES = ("min", "max")  # `steps: max`: each (experiment, input_scaling, sampler)'s largest step count
COUNT_COLUMNS = ("steps", "nfe")  # the columns that take min / max
DEFAULTS = {"metric": "fid", "library": "clean-fid", "extractor": "fmnist-classifier", "lower_is_better": True}
HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_EVALUATED = "holds", "contradicted", "inconclusive", "not evaluated"
# A set is diverged when its share of bright pixels (>= 250/255) exceeds this many times that of
# the same number of real training images. Measured at quick scale (400 images per set): real 1.07%;
# the sets that turned into white speckle (EDM's samplers on the DDPM network) 17-28%; sets of
# recognisable, if washed-out, garments up to 13.6% (t-free eta 0.5, FID 43). 15x puts the line
# (16%) in that gap; 5x (5.3%) also dropped sets of ordinary quality (DDIM eta 0, FID 39-45).
DIVERGED_FACTOR = 15.0
COLUMNS = ["paper", "claim", "title", "verdict", "effect", "ci_low", "ci_high", "half_width", "side",
           "paper_effect", "needed", "paired", "seeds", "n_samples", "excluded", "evidence", "metric", "library",
           "extractor", "check", "text", "source"]
FEATURE_FOLDERS = {"fmnist-classifier": "features"}  # where the evaluate stage keeps each set's features


@dataclass(frozen=True)
class Metric:
    name: str
    lower_is_better: bool

    @property
    def label(self) -> str:
        return self.name.upper() if self.name in ("fid", "kid", "is") else self.name

    def margin(self, a: float, b: float, factor: float = 1.0) -> float:
        """How far a beats b (by `factor`): positive when a is better."""
        return b - a * factor if self.lower_is_better else a - b * factor

    def best(self, values: dict):
        return (min if self.lower_is_better else max)(values, key=values.get)


@dataclass
class Effect:
    """One check on one table of values: the effect (positive side = the paper's), its text, what
    was missing, and the band the effect must lie in for the paper's claim."""
    value: float
    text: str = ""
    problems: list = field(default_factory=list)
    side: tuple = (0.0, math.inf)


def fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---- selecting configurations ------------------------------------------------------------

def _matches(column: pd.Series, want) -> pd.Series:
    if isinstance(want, dict):  # {min, max}, inclusive
        numbers = pd.to_numeric(column, errors="coerce")
        return numbers.between(want.get("min", -math.inf), want.get("max", math.inf))
    return column.isin(want) if isinstance(want, list) else column == want


def _items(selection: dict) -> list:
    """[(column, wanted)] with the sweep factors flattened in."""
    return [(k, w) for key, want in selection.items() for k, w in (want.items() if key == "factors" else [(key, want)])]


def pick(table: pd.DataFrame, selection: dict) -> pd.DataFrame:
    """The rows a selection asks for; `steps: max` keeps each sampler run's largest step count."""
    items, mask = _items(selection), pd.Series(True, index=table.index)
    extremes = [(c, w) for c, w in items if c in COUNT_COLUMNS and w in EXTREMES]
    for column, want in items:
        if (column, want) not in extremes:
            mask &= _matches(table[column], want) if column in table else False
    for column, want in extremes:  # after the other filters: the extreme among the rows still selected
        extreme = table[mask].groupby(list(NAME_COLUMNS), dropna=False)[column].transform(want)
        mask &= table[column] == extreme.reindex(table.index)
    return table[mask]


def _describe_one(key, want) -> str:
    if isinstance(want, dict):
        low, high = want.get("min"), want.get("max")
        return (f"{key}<={high}" if low is None else f"{key}>={low}" if high is None
                else f"{low}<={key}<={high}")
    if isinstance(want, list):
        return f"{key} in {'/'.join(map(str, want))}"
    return f"{key}={want}"


def describe(selection: dict) -> str:
    """'sampler=ddim_eta0, steps<=50': what a selection asks for, to name missing rows."""
    return ", ".join(_describe_one(k, w) for k, w in _items(selection)) or "any configuration"


def short(selection: dict) -> str:
    """'eps_simple ddim_eta0': a selection as evidence names it (names bare, numbers as key=value)."""
    return " ".join(str(w) if k in NAME_COLUMNS and isinstance(w, str) else _describe_one(k, w)
                    for k, w in _items(selection)) or "all"


def key_text(columns: list, key: tuple) -> str:
    return ", ".join(f"{c}={fmt(v)}" for c, v in zip(columns, key))


def by_key(frame: pd.DataFrame, columns: list) -> dict:
    """{key tuple: rows} for each value combination of `columns` (one group () without columns)."""
    if not columns:
        return {(): frame} if len(frame) else {}
    return {k if isinstance(k, tuple) else (k,): g for k, g in frame.groupby(columns, dropna=False, sort=True)}


def single(frame: pd.DataFrame, what: str):
    """(the one configuration in `frame`, None) or (None, what is wrong)."""
    if frame.empty:
        return None, f"no rows for {what}"
    if len(frame) > 1:
        varying = [c for c in CONFIG_COLUMNS if frame[c].nunique(dropna=False) > 1]
        configs = " / ".join(key_text(varying, tuple(r)) for r in frame[varying].itertuples(index=False))
        return None, f"{what} matches {len(frame)} configurations ({configs}); the claim must narrow its selection"
    return frame.iloc[0], None


def values_by(frame: pd.DataFrame, column: str, where: str = ""):
    """({value of `column`: metric value}, problems) with one configuration per value."""
    values, problems = {}, []
    for (key,), rows in by_key(frame, [column]).items():
        row, problem = single(rows, f"{column}={fmt(key)}{where}")
        if problem:
            problems.append(problem)
        else:
            values[key] = float(row["value"])
    return values, problems


def missing(problems: list) -> Effect:
    return Effect(math.nan, "", problems)


# ---- tolerances ----------------------------------------------------------------------------

def tolerance(spec: dict, b: float):
    """(the compared quantity of a and b as a function, the band it must lie in, how the band reads)."""
    if "within_factor" in spec:
        f = spec["within_factor"]
        return (lambda a: a / b if b else math.inf), (1 / f, f), f"within a factor {fmt(f)}"
    tol = spec["abs_tol"] if "abs_tol" in spec else spec["rel_tol"] * abs(b)
    reads = f"±{fmt(spec['abs_tol'])}" if "abs_tol" in spec else f"±{100 * spec['rel_tol']:g}%"
    return (lambda a: a - b), (-tol, tol), reads


# ---- the checks: each maps a table of configuration values to an Effect ----------------------

def near_value(table, spec, m: Metric) -> Effect:
    row, problem = single(table, describe(spec.get("select", {})))
    if problem:
        return missing([problem])
    target = spec["target"]
    compare, side, reads = tolerance(spec, target)
    value = float(row["value"])
    return Effect(compare(value), f"{m.label} {fmt(value)} against the paper's {fmt(target)} ({reads})", [], side)


def best(table, spec, m: Metric) -> Effect:
    among, expected = spec["among"], spec["expected"]
    values, problems = values_by(table, among)
    if "candidates" in spec:
        problems += [f"no rows for {among}={c}" for c in spec["candidates"] if c not in values]
        values = {k: v for k, v in values.items() if k in spec["candidates"]}
    others = {k: v for k, v in values.items() if k != expected}
    if expected not in values or not others:
        return missing([f"no rows for {among}={expected}" if expected not in values
                        else f"no other {among} to compare with"] + problems)
    runner_up = m.best(others)
    text = f"{expected} {m.label} {fmt(values[expected])}; " + ", ".join(f"{fmt(k)} {fmt(v)}" for k, v in others.items())
    return Effect(m.margin(values[expected], others[runner_up]), text, problems)


def paired(table, spec):
    """([(where, a, b)], problems): a's and b's values in each combination of the `pair_on` columns."""
    on, sides, problems, pairs = spec.get("pair_on", []), {}, [], []
    for side in ("a", "b"):
        frame = pick(table, spec[side])
        if frame.empty:
            problems.append(f"no rows for {describe(spec[side])}")
        sides[side] = by_key(frame, on)
    if problems:
        return pairs, problems
    for key in dict.fromkeys([*sides["a"], *sides["b"]]):
        where = f" at {key_text(on, key)}" if on else ""
        rows = {}
        for side in ("a", "b"):
            rows[side], problem = single(sides[side].get(key, table.iloc[:0]), describe(spec[side]) + where)
            if problem:
                problems.append(problem)
        if rows["a"] is not None and rows["b"] is not None:
            pairs.append((where, float(rows["a"]["value"]), float(rows["b"]["value"])))
    return pairs, problems


def better(table, spec, m: Metric) -> Effect:
    factor, (a_name, b_name) = spec.get("by_factor", 1.0), (short(spec["a"]), short(spec["b"]))
    pairs, problems = paired(table, spec)
    if not pairs:
        return missing(problems)
    scaled = f" × {fmt(factor)}" if factor != 1 else ""
    text = "; ".join(f"{a_name} {fmt(a)}{scaled} vs {b_name} {fmt(b)}{where}" for where, a, b in pairs)
    return Effect(float(np.mean([m.margin(a, b, factor) for _, a, b in pairs])), f"{m.label} {text}", problems)


def near(table, spec, m: Metric) -> Effect:
    a_name, b_name = short(spec["a"]), short(spec["b"])
    pairs, problems = paired(table, spec)
    if not pairs:
        return missing(problems)
    compared, side, reads = [], None, ""
    for _, a, b in pairs:
        compare, side, reads = tolerance(spec, b)
        compared.append(compare(a))
    text = "; ".join(f"{a_name} {fmt(a)} vs {b_name} {fmt(b)}{where}" for where, a, b in pairs)
    return Effect(float(np.mean(compared)), f"{m.label} {text} (paper: {reads})", problems, side)


def _numeric_order(keys) -> list | None:
    try:
        return sorted(keys, key=float)
    except (TypeError, ValueError):
        return None


def _signed(direction: str) -> int:
    return 1 if direction == "increasing" else -1


def trend(table, spec, m: Metric) -> Effect:
    along, direction = spec["along"], spec["direction"]
    values, problems = values_by(table, along)
    order = _numeric_order(values)
    if problems or order is None or len(order) < 2:
        return missing(problems or [f"{along} values {list(values)} are not numbers" if order is None
                                    else f"needs 2 or more values of {along}, found {[fmt(k) for k in order]}"])
    series = f"{m.label} " + " → ".join(f"{fmt(values[k])} ({along}={fmt(k)})" for k in order)
    return Effect(_signed(direction) * (values[order[-1]] - values[order[0]]), series)


def best_shifts(table, spec, m: Metric) -> Effect:
    among, across, direction = spec["among"], spec["across"], spec["direction"]
    everyone = set(table[among].dropna())
    winners, problems = [], []
    for (key,), rows in by_key(table, [across]).items():
        where = f" at {across}={fmt(key)}"
        values, trouble = values_by(rows, among, where)
        problems += trouble + [f"no rows for {among}={fmt(v)}{where}" for v in sorted(everyone - set(values), key=str)]
        if values:
            winner = m.best(values)
            winners.append((key, winner, values[winner]))
    order = _numeric_order([k for k, _, _ in winners])
    numbers = _numeric_order([w for _, w, _ in winners]) is not None
    if problems or order is None or not numbers or len(winners) < 2:
        return missing(problems or [f"{across} and {among} must be numbers" if order is None or not numbers
                                    else f"needs 2 or more values of {across}"])
    winners.sort(key=lambda w: float(w[0]))
    text = f"best {among} by {m.label}: " + "; ".join(f"{fmt(w)} ({m.label} {fmt(v)}) at {across}={fmt(k)}"
                                                     for k, w, v in winners)
    return Effect(_signed(direction) * (float(winners[-1][1]) - float(winners[0][1])), text)


def ordering(table, spec, m: Metric) -> Effect:
    present, problems = [], []
    for selection in spec["order"]:
        row, problem = single(pick(table, selection), describe(selection))
        if problem:
            problems.append(problem)
        else:
            present.append((short(selection), float(row["value"])))
    if len(present) < 2 or problems:
        return missing(problems or ["needs 2 or more of the ordered selections"])
    gaps = [m.margin(v0, v1) for (_, v0), (_, v1) in zip(present, present[1:])]
    return Effect(min(gaps), f"{m.label} " + " | ".join(f"{n} {fmt(v)}" for n, v in present))


KINDS = {"near_value": near_value, "best": best, "better": better, "near": near, "trend": trend,
         "best_shifts": best_shifts, "ordering": ordering}


# ---- intervals and verdicts ----------------------------------------------------------------

def run_check(table: pd.DataFrame, check: dict, m: Metric) -> list:
    """[(group name, Effect)] of the check on an already selected table, one per `per` group."""
    (kind, spec), = check.items()
    per = spec.get("per", [])
    if not per:
        return [("", KINDS[kind](table, spec, m))]
    return [(key_text(per, key), KINDS[kind](rows, spec, m)) for key, rows in by_key(table, per).items()]


def effect_interval(point: float, draws) -> tuple:
    """The basic bootstrap interval of an effect; the point itself when there are no draws."""
    if not np.isfinite(point) or not np.isfinite(np.asarray(draws, dtype=np.float64)).any():
        return (point, point)
    return intervals.basic_interval(point, draws, intervals.LEVEL)


def decide(low: float, high: float, side: tuple) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return NOT_EVALUATED
    if side[0] < low and high < side[1]:
        return HOLDS
    if high < side[0] or low > side[1]:
        return CONTRADICTED
    return INCONCLUSIVE


def needed(effect: float, low: float, high: float, side: tuple) -> str:
    """For an inconclusive verdict: about how many times the seeds and samples would shrink the
    interval (as 1/sqrt(count)) until it clears the nearest edge of the paper's side."""
    edges = [e for e in side if math.isfinite(e)]
    distance = min(abs(effect - e) for e in edges) if edges else math.inf
    half = (high - low) / 2
    if not half > 0:
        return ""
    factor = (half / distance) ** 2 if distance > 0 else math.inf
    return "> 100×" if factor > 100 else f"≈ {max(factor, 1.0):.2g}×"


@dataclass
class GroupResult:
    name: str
    effect: Effect
    low: float
    high: float

    @property
    def verdict(self) -> str:
        if self.effect.problems:  # rows the claim asks for are absent: it is not the claim as stated
            return NOT_EVALUATED
        return decide(self.low, self.high, self.effect.side)

    @property
    def margin(self) -> float:
        """How far inside the paper's side the interval is (negative: it reaches outside)."""
        return min(self.low - self.effect.side[0], self.effect.side[1] - self.high)


def combine(groups: list) -> GroupResult:
    """The group a per-group claim's verdict turns on: a contradicted one, else an unevaluated or
    inconclusive one with the least margin, else the holding one with the least margin."""
    for wanted in (CONTRADICTED, NOT_EVALUATED, INCONCLUSIVE, HOLDS):
        chosen = [g for g in groups if g.verdict == wanted]
        if chosen:
            return min(chosen, key=lambda g: g.margin if np.isfinite(g.margin) else -math.inf)
    raise ValueError("no groups")


# ---- the values a claim is decided on -------------------------------------------------------

def factors_of(doc: dict) -> dict:
    """{experiment: {factor: value}} from the sweep expansion (experiments without factors: {})."""
    return {name: exp.get("factors", {}) for name, exp in doc.get("experiments", {}).items()}


def default_extractor(metrics: pd.DataFrame, paper: str) -> str:
    """The features of a claim that names none: the Fashion-MNIST classifier's, or Inception's for a
    paper whose sample sets are all scored with Inception (its CIFAR-10 experiments at paper scale)."""
    present = set(metrics.loc[metrics["paper"] == paper, "extractor"])
    return "inception" if DEFAULTS["extractor"] not in present and "inception" in present else DEFAULTS["extractor"]


def diverged_sets(metrics: pd.DataFrame) -> pd.DataFrame:
    """Sample sets (paper, experiment, input_scaling, sampler, steps, seed) with their bright-pixel share
    above DIVERGED_FACTOR times the real training images' (the real-data floor rows); with the limit."""
    bright = metrics[(metrics["extractor"] == "pixels") & (metrics["metric"] == "bright_fraction")]
    real = bright.loc[bright["paper"] == "real_data", "value"]
    if bright.empty or real.empty:
        return bright.iloc[:0].assign(limit=[])
    limit = DIVERGED_FACTOR * float(real.mean())
    return bright[(bright["paper"] != "real_data") & (bright["value"] > limit)].assign(limit=limit)


SET_COLUMNS = ["experiment", "input_scaling", "sampler", "steps", "seed"]


def set_name(row) -> str:
    return f"{row['experiment']}/{row['input_scaling']}/{row['sampler']}/{row['steps']}/seed{row['seed']}"


def config_table(metrics: pd.DataFrame, paper: str, want: dict, factors: dict, excluded: pd.DataFrame):
    """(one row per configuration of `paper`: value = mean over its seeds, `seed_list`, n_samples;
    problem or None). Sets in `excluded` are left out."""
    rows = metrics[metrics["paper"] == paper].dropna(subset=["value"])
    chosen = rows[(rows["metric"] == want["metric"]) & (rows["library"] == want["library"])
                  & (rows["extractor"] == want["extractor"])]
    if chosen.empty:
        have = sorted({"/".join(map(str, k)) for k in rows[["metric", "library", "extractor"]].itertuples(index=False)})
        return None, (f"no {want['metric']} rows by {want['library']} on {want['extractor']} for {paper}"
                      + (f" (metric/library/extractor present: {', '.join(have)})" if have else " (no rows at all)"))
    mine = excluded[excluded["paper"] == paper]
    if len(mine):
        out = chosen.merge(mine[SET_COLUMNS].drop_duplicates(), on=SET_COLUMNS, how="left", indicator=True)
        chosen = out[out["_merge"] == "left_only"].drop(columns="_merge")
    table = (chosen.groupby(CONFIG_COLUMNS, dropna=False)
             .agg(value=("value", "mean"), seeds=("seed", "nunique"), seed_list=("seed", lambda s: tuple(sorted(s))),
                  n_samples=("n_samples", "min")).reset_index())
    for name in sorted({f for fs in factors.values() for f in fs}):
        table[name] = table["experiment"].map(lambda e, name=name: factors.get(e, {}).get(name))
    return table, None


@dataclass
class FeatureSource:
    """Where the features of one extractor's sets are, and the fixed reference statistics."""
    folder: Path
    reference: object  # intervals.Reference

    def path(self, paper, row, seed) -> Path:
        return (self.folder / paper / str(row["experiment"]) / str(row["input_scaling"]) / str(row["sampler"])
                / str(int(row["steps"])) / f"seed{int(seed)}.npz")


def feature_draws(table: pd.DataFrame, paper: str, source: FeatureSource, draws: int, seed: int):
    """([configurations, draws] bootstrap values of the table's rows, paired or None), or (None,
    why not) when some set's features are missing."""
    sets, shapes = {}, set()
    for index, row in table.iterrows():
        per_seed = {}
        for s in row["seed_list"]:
            path = source.path(paper, row, s)
            if not path.exists():
                return None, f"no interval: {path} is missing"
            with np.load(path) as f:
                per_seed[s] = f["features"]
                shapes.add((tuple(f["image_shape"]) if "image_shape" in f.files else None, len(f["features"])))
        sets[index] = per_seed
    values = intervals.bootstrap_values(sets, source.reference, draws=draws, seed=seed)
    seed_lists = {tuple(r) for r in table["seed_list"]}
    shares_noise = len(seed_lists) == 1 and len(shapes) == 1 and None not in {s for s, _ in shapes}
    return np.stack([values[i] for i in table.index]), shares_noise


def scalar_draws(table: pd.DataFrame, metrics: pd.DataFrame, paper: str, want: dict, draws: int, seed: int):
    """Normal draws of a single-seed scalar from its `<metric>_se` row, or None without one."""
    se_rows = metrics[(metrics["paper"] == paper) & (metrics["metric"] == f"{want['metric']}_se")
                      & (metrics["library"] == want["library"])]
    if se_rows.empty or len(table) != 1:
        return None
    se = float(se_rows["value"].iloc[0])
    rng = np.random.default_rng(seed)
    return table["value"].to_numpy()[:, None] + se * rng.standard_normal((1, draws))


def used_rows(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The configurations a check can read: those its `a`/`b`/`order` selections pick (all rows for
    the checks that compare every configuration), so no other set needs features or a bootstrap."""
    selections = [spec[side] for side in ("a", "b") if side in spec] + list(spec.get("order", []))
    if not selections:
        return table
    keep = pd.Series(False, index=table.index)
    for selection in selections:
        keep |= table.index.isin(pick(table, selection).index)
    return table[keep]


# ---- evaluating claims ---------------------------------------------------------------------

def evaluate_claim(metrics: pd.DataFrame, paper: str, claim: dict, factors: dict | None = None,
                   sources: dict | None = None, draws: int = 1000, seed: int = 0,
                   excluded: pd.DataFrame | None = None) -> dict:
    """One claims.csv row: effect, interval and verdict of `claim` on the metrics of `paper`.
    `sources`: {extractor: FeatureSource} of the sets' kept features (no interval without);
    `excluded`: diverged_sets(metrics), when the caller has it already."""
    want = {key: claim.get(key, default) for key, default in DEFAULTS.items()}
    want["extractor"] = claim.get("extractor", default_extractor(metrics, paper))
    m = Metric(want["metric"], want["lower_is_better"])
    (kind, spec), = claim["check"].items()
    row = {"paper": paper, "claim": claim["id"], "title": claim.get("title", claim["id"]),
           "paper_effect": claim.get("paper_effect", spec.get("target", math.nan)), "metric": want["metric"],
           "library": want["library"], "extractor": want["extractor"], "check": kind, "text": claim["text"],
           "source": claim["source"], "excluded": "", "paired": "", "needed": "", "seeds": "", "n_samples": ""}
    excluded = diverged_sets(metrics) if excluded is None else excluded
    table, problem = config_table(metrics, paper, want, factors or {}, excluded)
    selection = spec.get("select", {})
    if table is not None:
        table = pick(table, selection)
        if table.empty:
            problem = f"no {m.name} rows for {describe(selection)}"
    if problem:
        return {**row, "verdict": NOT_EVALUATED, "evidence": problem}
    mine = excluded[excluded["paper"] == paper]
    for column, wanted in _items(selection):  # the excluded sets the selection would have taken
        if column in CONFIG_COLUMNS and wanted not in EXTREMES:
            mine = mine[_matches(mine[column], wanted)]
    row["excluded"] = "; ".join(f"{set_name(r)} (bright pixels {100 * r['value']:.1f}% > {100 * r['limit']:.1f}%)"
                                for _, r in mine.iterrows())
    table = used_rows(table, spec)
    if table.empty:  # every set the check compares was left out (diverged) or never drawn
        because = f"; left out: {row['excluded']}" if row["excluded"] else ""
        return {**row, "verdict": NOT_EVALUATED, "evidence": f"no set to compare for {describe(selection)}{because}"}
    point = run_check(table, claim["check"], m)
    source = (sources or {}).get(want["extractor"]) if m.name == "fid" else None
    note, shares_noise, values = "", None, None
    if source is not None:
        values, shares_noise = feature_draws(table, paper, source, draws, seed)
        if values is None:
            note, shares_noise = shares_noise, None
    else:
        values = scalar_draws(table, metrics, paper, want, draws, seed)
        note = "" if values is not None else "point estimate only: no features or standard error for an interval"
    groups = []
    for g, (name, effect) in enumerate(point):
        effect_draws = []
        if values is not None and np.isfinite(effect.value):
            for b in range(values.shape[1]):
                drawn = run_check(table.assign(value=values[:, b]), claim["check"], m)[g][1]
                effect_draws.append(drawn.value)
        low, high = effect_interval(effect.value, effect_draws)
        groups.append(GroupResult(name, effect, low, high))
    decisive = combine(groups)
    verdict = decisive.verdict
    evidence = "; ".join(
        (f"[{g.name}] " if g.name else "") + g.effect.text
        + (f" → effect {fmt(g.effect.value)} [{fmt(g.low)}, {fmt(g.high)}] {g.verdict}" if np.isfinite(g.effect.value) else "")
        for g in groups)
    problems = [p for g in groups for p in g.effect.problems]
    if problems:
        evidence += ("; " if evidence else "") + f"{NOT_EVALUATED if verdict == NOT_EVALUATED else 'also missing'}: " + "; ".join(problems)
    used = table["seed_list"].map(len)
    if values is not None and source is not None and used.min() == 1:
        note = ", ".join(filter(None, [note, "one network per configuration: the interval covers the draw of "
                                             "samples, not the spread between replicate networks"]))
    if note:
        evidence += f" ({note})"
    return {**row, "verdict": verdict, "effect": decisive.effect.value, "ci_low": decisive.low,
            "ci_high": decisive.high, "half_width": (decisive.high - decisive.low) / 2,
            "side": f"({fmt(decisive.effect.side[0])}, {fmt(decisive.effect.side[1])})",
            "needed": needed(decisive.effect.value, decisive.low, decisive.high, decisive.effect.side)
            if verdict == INCONCLUSIVE else "",
            "paired": "" if shares_noise is None else "paired" if shares_noise else "unpaired",
            "seeds": str(used.min()) if used.min() == used.max() else f"{used.min()}-{used.max()}",
            "n_samples": str(int(table["n_samples"].min())), "evidence": evidence}


def evaluate_claims(metrics: pd.DataFrame, replications: dict, sources: dict | None = None,
                    draws: int = 1000) -> pd.DataFrame:
    """claims.csv: one row per claim of every replication, in file order."""
    excluded = diverged_sets(metrics)
    rows = [evaluate_claim(metrics, paper, claim, factors_of(doc), sources, draws, excluded=excluded)
            for paper, doc in sorted(replications.items()) for claim in doc.get("claims", [])]
    return pd.DataFrame(rows, columns=COLUMNS)


# ---- checking claims against their replication file (parse time) -------------------------

def _listed(values) -> str:
    values = sorted(map(str, values))
    return ", ".join(values[:15]) + (f", … ({len(values)} in all)" if len(values) > 15 else "")


def _selections(spec: dict):
    for role in ("select", "a", "b"):
        if role in spec:
            yield role, spec[role]
    for i, selection in enumerate(spec.get("order", [])):
        yield f"order.{i}", selection


def claim_problems(doc: dict) -> list:
    """Names in the claims that the replication does not define (labels, columns, factors, ids)."""
    experiments = doc.get("experiments", {})
    scalings = [e["input_scalings"] for e in experiments.values()]  # a list, or one list per scale
    # a paper's own stages (e.g. swiss_roll, noise_level) write rows under their stage name
    known = {"experiment": set(experiments) | set(doc.get("stages", {})),
             "sampler": {s["label"] for e in experiments.values() for s in e["samplers"]},
             "input_scaling": {x for sc in scalings for xs in (sc.values() if isinstance(sc, dict) else [sc])
                               for x in xs}}
    factors = {f for e in experiments.values() for f in e.get("factors", {})}
    columns = set(CONFIG_COLUMNS) | factors
    problems, ids = [], set()

    def undefined(where, key, values):
        problems.extend(f"{where}: {key} {v!r} is not defined (defined: {_listed(known[key])})"
                        for v in values if v not in known[key])

    for i, claim in enumerate(doc.get("claims", [])):
        if claim["id"] in ids:
            problems.append(f"claims.{i}.id: duplicate claim id {claim['id']!r}")
        ids.add(claim["id"])
        (kind, spec), = claim["check"].items()
        where = f"claims.{i}.check.{kind}"
        for role, selection in _selections(spec):
            for key, want in selection.items():
                if key == "factors":
                    problems.extend(f"{where}.{role}.factors: {name!r} is not a sweep factor "
                                    f"(factors: {_listed(factors) or 'none'})" for name in want if name not in factors)
                elif key in known:
                    undefined(f"{where}.{role}.{key}", key, want if isinstance(want, list) else [want])
        named = [(f, c) for f in ("pair_on", "per") for c in spec.get(f, [])]
        named += [(f, spec[f]) for f in ("among", "across", "along") if f in spec]
        problems.extend(f"{where}.{option}: {c!r} is neither a metrics column nor a sweep factor "
                        f"(allowed: {_listed(columns)})" for option, c in named if c not in columns)
        if kind == "best" and spec["among"] in known:
            undefined(f"{where}.expected", spec["among"], [spec["expected"]])
            undefined(f"{where}.candidates", spec["among"], spec.get("candidates", []))
    return problems


def check_claims(replications: dict, directory="replications") -> None:
    """Raise ConfigError naming file and key for the first undefined name in any claim."""
    for paper, doc in sorted(replications.items()):
        problems = claim_problems(doc)
        if problems:
            raise ConfigError(f"{directory}/{paper}.yaml: {problems[0]}")
