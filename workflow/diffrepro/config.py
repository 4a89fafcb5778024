"""The workflow config (workflow/config.yaml, with `--config` overrides): validated, and the
values an experiment gives per scale (smoke, quick, paper).

Imported by the Snakefile at parse time, so it must stay cheap: no torch, no numpy.
"""

from pathlib import Path

import jsonschema
import yaml

from .schema import ConfigError, load_schema, validate

SCALES = ("smoke", "quick", "paper")
# A scale's `performance:` settings when it leaves them out (diffrepro.performance applies them).
PERFORMANCE_DEFAULTS = {"device": "auto", "bf16": False, "tf32": False, "channels_last": False, "compile": False}


_JSON_TYPES = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
               "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None}


def _type_errors(error):
    yield error
    for sub in error.context or []:
        yield from _type_errors(sub)


def _read_scalar(text: str):
    """'30' -> 30, '1e-3' -> 0.001 (YAML 1.1 would keep that a string), 'true' -> True, 'null' -> None."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "~": None}.get(text.strip().lower(), text)


def _coerce_command_line_strings(config: dict, schema: dict) -> None:
    """Snakemake reads the values inside a nested `--config key={...}` as strings ('30', 'true'):
    where the schema wants a number, boolean or null, read such a string as YAML does."""
    validator = jsonschema.Draft202012Validator(schema)
    for _ in range(10_000):  # each pass fixes at least one value
        fixed = False
        for error in (e for top in validator.iter_errors(config) for e in _type_errors(top)):
            if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
                continue
            wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            value = _read_scalar(error.instance)
            if any(_JSON_TYPES.get(t, lambda v: False)(value) for t in wanted):
                *parents, last = error.absolute_path
                target = config
                for key in parents:
                    target = target[key]
                if target[last] == error.instance:
                    target[last], fixed = value, True
        if not fixed:
            return


def load_config(config: dict, source="workflow/config.yaml") -> dict:
    """The workflow config, validated against its schema, with each scale's KID subset and the
    configured paths checked; the first problem is one ConfigError line."""
    # `--config download=false` arrives as the string 'false'; read such words as YAML does.
    for key, value in config.items():
        if isinstance(value, str) and value.lower() in ("true", "false", "null"):
            config[key] = yaml.safe_load(value.lower())
    _coerce_command_line_strings(config, load_schema("config.schema.yaml"))
    validate(config, "config.schema.yaml", source)
    for scale, settings in config["scales"].items():
        for where, sampling, fid in [("", settings["sampling"], settings["fid"])] + [
                (f".datasets.{name}", {**settings["sampling"], **d.get("sampling", {})}, {**settings["fid"], **d.get("fid", {})})
                for name, d in settings.get("datasets", {}).items()]:
            limit = min(sampling["n_samples"], fid["n_reference"])
            if fid["kid_subset_size"] > limit:
                raise ConfigError(f"{source}: scales.{scale}{where}.fid.kid_subset_size: {fid['kid_subset_size']} is more than "
                                  f"the {limit} images a KID subset can be drawn from (n_samples {sampling['n_samples']}, "
                                  f"n_reference {fid['n_reference']})")
    for key in ("data_root", "cifar10_root", "inception_weights"):
        if config.get(key) and not Path(config[key]).exists():
            raise ConfigError(f"{source}: {key}: path {config[key]} does not exist (fix the path or set it to null)")
    return config


def per_scale(value, scale: str) -> list:
    """A YAML list that applies to every scale, or a {scale: list} mapping (absent scale: empty)."""
    return value if isinstance(value, list) else value.get(scale, [])


def is_per_scale(value) -> bool:
    """Whether a setting is a {scale: value} mapping: its keys are scale names, which no setting's keys are."""
    return isinstance(value, dict) and bool(value) and set(value) <= set(SCALES)


def at_scale(value, scale: str, default=None):
    """An experiment setting that applies to every scale, or a {scale: value} mapping (absent scale:
    `default`)."""
    return value.get(scale, default) if is_per_scale(value) else value
