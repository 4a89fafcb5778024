"""Paper claims checked on metrics.csv: a small declarative vocabulary, evaluated with pandas.

A claim (`claims:` in replications/<paper>.yaml, schema `$defs/claim`) picks one metric
(default: FID by clean-fid on the Fashion-MNIST classifier's features), averages it over seeds
per configuration (experiment, input_scaling, sampler, steps, nfe), and applies one check:

  near_value   one configuration lies within a tolerance of a number (the paper's)
  best         among the values of a column, `expected` scores best
  better       selection a beats selection b in every pair matched on `pair_on` (optionally by a factor)
  near         a lies within a tolerance of b in every pair matched on `pair_on`
  trend        the value falls (or rises) as `along` grows, steps against it up to `noise` tolerated
  best_shifts  the best value of `among` falls (or rises) as `across` grows
  ordering     the listed selections, best first, are in that order (inversions up to `noise`)

Every check takes `select` (rows it looks at) and `per` (columns to check it separately for).
Columns are the metrics columns above or an experiment's sweep `factors`. The verdict is true,
false, or "not evaluated" when rows it needs are absent (e.g. a scale that does not run them),
with the missing rows named. A counterexample among the rows present makes it false.
"""

import math
from dataclasses import dataclass

import pandas as pd

from .config import ConfigError

CONFIG_COLUMNS = ["experiment", "input_scaling", "sampler", "steps", "nfe"]
NAME_COLUMNS = ("experiment", "input_scaling", "sampler")
EXTREMES = ("min", "max")  # `steps: max`: each (experiment, input_scaling, sampler)'s largest step count
COUNT_COLUMNS = ("steps", "nfe")  # the columns that take min / max
DEFAULTS = {"metric": "fid", "library": "clean-fid", "extractor": "fmnist-classifier", "lower_is_better": True}
NOT_EVALUATED = "not evaluated"
COLUMNS = ["paper", "claim", "holds", "evidence", "ours", "compared_with", "reference", "metric", "library",
           "extractor", "seeds", "check", "text", "source"]


@dataclass
class Verdict:
    holds: object  # True, False or NOT_EVALUATED
    evidence: str
    ours: float = math.nan  # our number the verdict turns on
    compared_with: float = math.nan  # what it was compared with (ours, or the paper's number)


@dataclass(frozen=True)
class Metric:
    name: str
    lower_is_better: bool

    @property
    def label(self) -> str:
        return self.name.upper() if self.name in ("fid", "kid", "is") else self.name

    def beats(self, a: float, b: float, factor: float = 1.0) -> bool:
        """a is better than b, by `factor` (a·factor < b when lower is better)."""
        return a * factor < b if self.lower_is_better else a > b * factor

    def best(self, values: dict):
        return (min if self.lower_is_better else max)(values, key=values.get)


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


def verdict(checks: list, problems: list, decisive=(math.nan, math.nan)) -> Verdict:
    """checks: [(ok, text)]. Any failed check decides false; missing rows leave it unevaluated."""
    failed = any(not ok for ok, _ in checks)
    holds = False if failed else NOT_EVALUATED if problems or not checks else True
    missing = [("also " if failed else f"{NOT_EVALUATED}: ") + "; ".join(problems)] if problems else []
    evidence = "; ".join([text for _, text in checks] + missing)
    return Verdict(holds, evidence, *decisive)


# ---- tolerances ----------------------------------------------------------------------------

def close(a: float, b: float, spec: dict):
    """(a within the spec's tolerance of b, how it reads, how far off relative to the tolerance)."""
    if "abs_tol" in spec:
        tol = spec["abs_tol"]
        ok, bound, badness = abs(a - b) <= tol, f"±{fmt(tol)}", abs(a - b) / max(tol, 1e-300)
    elif "rel_tol" in spec:
        tol = spec["rel_tol"]
        ok, bound, badness = abs(a - b) <= tol * abs(b), f"{100 * tol:g}%", abs(a - b) / max(tol * abs(b), 1e-300)
    else:
        tol = spec["within_factor"]
        ratio = max(a, b) / min(a, b) if min(a, b) > 0 else math.inf
        ok, bound, badness = ratio <= tol, f"a factor {fmt(tol)}", ratio / tol
    return ok, f"{fmt(a)} {'within' if ok else 'not within'} {bound} of {fmt(b)}", badness


# ---- the checks ----------------------------------------------------------------------------

def near_value(table, spec, m: Metric) -> Verdict:
    row, problem = single(table, describe(spec.get("select", {})))
    if problem:
        return Verdict(NOT_EVALUATED, problem)
    value, target = float(row["value"]), spec["target"]
    ok, text, _ = close(value, target, spec)
    return Verdict(ok, f"{m.label} {text} (target)", value, target)


def best(table, spec, m: Metric) -> Verdict:
    among, expected = spec["among"], spec["expected"]
    values, problems = values_by(table, among)
    if "candidates" in spec:
        problems += [f"no rows for {among}={c}" for c in spec["candidates"] if c not in values]
        values = {k: v for k, v in values.items() if k in spec["candidates"]}
    others = {k: v for k, v in values.items() if k != expected}
    if expected not in values or not others:
        missing = f"no rows for {among}={expected}" if expected not in values else f"no other {among} to compare with"
        return Verdict(NOT_EVALUATED, "; ".join([missing] + problems))
    ours, runner_up = values[expected], others[m.best(others)]
    checks = [(m.beats(ours, v), f"{expected} {m.label} {fmt(ours)} {'beats' if m.beats(ours, v) else 'does not beat'} "
                                 f"{fmt(k)} {fmt(v)}") for k, v in others.items()]
    return verdict(checks, problems, (ours, runner_up))


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


def better(table, spec, m: Metric) -> Verdict:
    factor, (a_name, b_name) = spec.get("by_factor", 1.0), (short(spec["a"]), short(spec["b"]))
    pairs, problems = paired(table, spec)
    scaled = (lambda x: f"{fmt(x)} × {fmt(factor)}") if factor != 1 else fmt
    checks, margins = [], []
    for where, a, b in pairs:
        ok = m.beats(a, b, factor)
        lhs, rhs = (scaled(a), fmt(b)) if m.lower_is_better else (fmt(a), scaled(b))
        op = ("<" if ok else ">=") if m.lower_is_better else (">" if ok else "<=")
        checks.append((ok, f"{a_name} {m.label} {lhs} {op} {b_name} {rhs}{where}"))
        margin = (b - a * factor) if m.lower_is_better else (a - b * factor)
        margins.append((margin / max(abs(b), 1e-300), a, b))  # relative: the closest call decides
    decisive = min(margins)[1:] if margins else (math.nan, math.nan)
    return verdict(checks, problems, decisive)


def near(table, spec, m: Metric) -> Verdict:
    a_name, b_name = short(spec["a"]), short(spec["b"])
    pairs, problems = paired(table, spec)
    checks, badness = [], []
    for where, a, b in pairs:
        ok, text, bad = close(a, b, spec)
        checks.append((ok, f"{a_name} {m.label} {text} ({b_name}){where}"))
        badness.append((bad, a, b))
    decisive = max(badness)[1:] if badness else (math.nan, math.nan)
    return verdict(checks, problems, decisive)


def _numeric_order(keys) -> list | None:
    try:
        return sorted(keys, key=float)
    except (TypeError, ValueError):
        return None


def _moves(points: list, direction: str, noise: float, what: str):
    """Checks that [(x, y)] (x increasing) moves `direction`: no step against it above noise,
    and the last point beyond the first."""
    sign = 1 if direction == "increasing" else -1
    checks = [(False, f"{what} {'falls' if sign > 0 else 'rises'} by {fmt(abs(y1 - y0))} from {x0} to {x1}"
                      + (f" (noise {fmt(noise)})" if noise else ""))
              for (x0, y0), (x1, y1) in zip(points, points[1:]) if sign * (y0 - y1) > noise]
    overall = sign * (points[-1][1] - points[0][1]) > 0
    checks.append((overall, f"{what} {direction} overall" if overall else f"{what} not {direction} overall"))
    return checks


def trend(table, spec, m: Metric) -> Verdict:
    along, direction, noise = spec["along"], spec["direction"], spec.get("noise", 0.0)
    values, problems = values_by(table, along)
    order = _numeric_order(values)
    if problems or order is None or len(order) < 2:
        reason = (f"{along} values {list(values)} are not numbers" if order is None
                  else f"needs 2 or more values of {along}, found {[fmt(k) for k in order]}")
        return Verdict(NOT_EVALUATED, "; ".join(problems or [reason]))
    points = [(f"{along}={fmt(k)}", values[k]) for k in order]
    series = f"{m.label} " + " → ".join(f"{fmt(y)} ({x})" for x, y in points)
    checks = _moves(points, direction, noise, m.label)
    ok = all(c for c, _ in checks)
    return Verdict(ok, "; ".join([series] + [t for c, t in checks if not c]), points[-1][1], points[0][1])


def best_shifts(table, spec, m: Metric) -> Verdict:
    among, across, direction = spec["among"], spec["across"], spec["direction"]
    groups = by_key(table, [across])
    everyone = set(table[among].dropna())
    winners, problems = [], []
    for (key,), rows in groups.items():
        where = f" at {across}={fmt(key)}"
        values, trouble = values_by(rows, among, where)
        problems += trouble + [f"no rows for {among}={fmt(v)}{where}" for v in sorted(everyone - set(values), key=str)]
        if values:
            winner = m.best(values)
            winners.append((key, winner, values[winner]))
    order = _numeric_order([k for k, _, _ in winners])
    numbers = _numeric_order([w for _, w, _ in winners]) is not None
    if problems or order is None or not numbers or len(winners) < 2:
        reason = (f"{across} and {among} must be numbers" if order is None or not numbers
                  else f"needs 2 or more values of {across}")
        return Verdict(NOT_EVALUATED, "; ".join(problems or [reason]))
    winners.sort(key=lambda w: float(w[0]))
    text = f"best {among} by {m.label}: " + "; ".join(f"{fmt(w)} ({m.label} {fmt(v)}) at {across}={fmt(k)}"
                                                     for k, w, v in winners)
    checks = _moves([(f"{across}={fmt(k)}", float(w)) for k, w, _ in winners], direction, 0.0, f"best {among}")
    ok = all(c for c, _ in checks)
    return Verdict(ok, "; ".join([text] + [t for c, t in checks if not c]),
                   float(winners[-1][1]), float(winners[0][1]))


def ordering(table, spec, m: Metric) -> Verdict:
    noise, present, problems = spec.get("noise", 0.0), [], []
    for selection in spec["order"]:
        row, problem = single(pick(table, selection), describe(selection))
        if problem:
            problems.append(problem)
        else:
            present.append((short(selection), float(row["value"])))
    checks, worst = [], []
    for (n0, v0), (n1, v1) in zip(present, present[1:]):
        against = (v0 - v1) if m.lower_is_better else (v1 - v0)  # > 0: n1 scored better than n0
        ok = against <= noise
        relation = "ahead of" if ok else "behind"
        checks.append((ok, f"{n0} {m.label} {fmt(v0)} {relation} {n1} {fmt(v1)}"
                           + (f" (noise {fmt(noise)})" if noise and against > 0 else "")))
        worst.append((against, v0, v1))
    return verdict(checks, problems, max(worst)[1:] if worst else (math.nan, math.nan))


KINDS = {"near_value": near_value, "best": best, "better": better, "near": near, "trend": trend,
         "best_shifts": best_shifts, "ordering": ordering}


# ---- evaluating claims ---------------------------------------------------------------------

def _combine(parts: list) -> Verdict:
    """The verdict of a check run `per` group: false if any group fails, unevaluated if any is."""
    holds = [v.holds for _, v in parts]
    overall = False if False in holds else NOT_EVALUATED if NOT_EVALUATED in holds else True
    decisive = next((v for _, v in parts if v.holds is False), parts[0][1])
    evidence = "; ".join(f"[{name}] {v.evidence}" for name, v in parts)
    return Verdict(overall, evidence, decisive.ours, decisive.compared_with)


def run_check(table: pd.DataFrame, check: dict, m: Metric, what: str) -> Verdict:
    (kind, spec), = check.items()
    table = pick(table, spec.get("select", {}))
    if table.empty:
        return Verdict(NOT_EVALUATED, f"no {what} rows for {describe(spec.get('select', {}))}")
    per = spec.get("per", [])
    if not per:
        return KINDS[kind](table, spec, m)
    return _combine([(key_text(per, key), KINDS[kind](rows, spec, m)) for key, rows in by_key(table, per).items()])


def factors_of(doc: dict) -> dict:
    """{experiment: {factor: value}} from the sweep expansion (experiments without factors: {})."""
    return {name: exp.get("factors", {}) for name, exp in doc.get("experiments", {}).items()}


def config_table(metrics: pd.DataFrame, paper: str, want: dict, factors: dict):
    """(one row per configuration of `paper` with value = mean over seeds, problem or None)."""
    rows = metrics[metrics["paper"] == paper].dropna(subset=["value"])
    chosen = rows[(rows["metric"] == want["metric"]) & (rows["library"] == want["library"])
                  & (rows["extractor"] == want["extractor"])]
    if chosen.empty:
        have = sorted({"/".join(map(str, k)) for k in rows[["metric", "library", "extractor"]].itertuples(index=False)})
        return None, (f"no {want['metric']} rows by {want['library']} on {want['extractor']} for {paper}"
                      + (f" (metric/library/extractor present: {', '.join(have)})" if have else " (no rows at all)"))
    table = (chosen.groupby(CONFIG_COLUMNS, dropna=False)
             .agg(value=("value", "mean"), seeds=("seed", "nunique")).reset_index())
    for name in sorted({f for fs in factors.values() for f in fs}):
        table[name] = table["experiment"].map(lambda e, name=name: factors.get(e, {}).get(name))
    return table, None


def default_extractor(metrics: pd.DataFrame, paper: str) -> str:
    """The features of a claim that names none: the Fashion-MNIST classifier's, or Inception's for a
    paper whose sample sets are all scored with Inception (its CIFAR-10 experiments at paper scale)."""
    present = set(metrics.loc[metrics["paper"] == paper, "extractor"])
    return "inception" if DEFAULTS["extractor"] not in present and "inception" in present else DEFAULTS["extractor"]


def evaluate_claim(metrics: pd.DataFrame, paper: str, claim: dict, factors: dict | None = None) -> dict:
    """One claims.csv row: the verdict of `claim` on the metrics of `paper`."""
    want = {key: claim.get(key, default) for key, default in DEFAULTS.items()}
    want["extractor"] = claim.get("extractor", default_extractor(metrics, paper))
    m = Metric(want["metric"], want["lower_is_better"])
    (kind, spec), = claim["check"].items()
    table, problem = config_table(metrics, paper, want, factors or {})
    seeds = ""
    if problem:
        result = Verdict(NOT_EVALUATED, problem)
    else:
        used = pick(table, spec.get("select", {}))["seeds"]
        seeds = "" if used.empty else str(used.min()) if used.min() == used.max() else f"{used.min()}-{used.max()}"
        result = run_check(table, claim["check"], m, f"{m.name} ({want['library']}, {want['extractor']})")
    holds = {True: "true", False: "false"}.get(result.holds, NOT_EVALUATED)
    reference = claim.get("reference", spec["target"] if kind == "near_value" else math.nan)
    return {"paper": paper, "claim": claim["id"], "holds": holds, "evidence": result.evidence,
            "ours": result.ours, "compared_with": result.compared_with, "reference": reference,
            "metric": want["metric"], "library": want["library"], "extractor": want["extractor"], "seeds": seeds,
            "check": kind, "text": claim["text"], "source": claim["source"]}


def evaluate_claims(metrics: pd.DataFrame, replications: dict) -> pd.DataFrame:
    """claims.csv: one row per claim of every replication, in file order."""
    rows = [evaluate_claim(metrics, paper, claim, factors_of(doc))
            for paper, doc in sorted(replications.items()) for claim in doc.get("claims", [])]
    return pd.DataFrame(rows, columns=COLUMNS)


# ---- checking claims against their replication file (parse time) -------------------------

def _listed(values) -> str:
    values = sorted(map(str, values))
    return ", ".join(values[:15]) + (f", … ({len(values)} in all)" if len(values) > 15 else "")


def _selections(spec: dict):
    for field in ("select", "a", "b"):
        if field in spec:
            yield field, spec[field]
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
        for field, selection in _selections(spec):
            for key, want in selection.items():
                if key == "factors":
                    problems.extend(f"{where}.{field}.factors: {name!r} is not a sweep factor "
                                    f"(factors: {_listed(factors) or 'none'})" for name in want if name not in factors)
                elif key in known:
                    undefined(f"{where}.{field}.{key}", key, want if isinstance(want, list) else [want])
        named = [(f, c) for f in ("pair_on", "per") for c in spec.get(f, [])]
        named += [(f, spec[f]) for f in ("among", "across", "along") if f in spec]
        problems.extend(f"{where}.{field}: {c!r} is neither a metrics column nor a sweep factor "
                        f"(allowed: {_listed(columns)})" for field, c in named if c not in columns)
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
