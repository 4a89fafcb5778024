"""Schema validation of config and replication files, with one-line errors naming file, key and what is allowed.

Imported by the Snakefile at parse time, so it must stay cheap: no torch, no numpy.
"""

import functools
from pathlib import Path

import jsonschema
import yaml

from .errors import UserError

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


class ConfigError(UserError, ValueError):
    """A config or replication file is invalid; the message names file, key and allowed values."""


@functools.cache  # parsed once per process: every replication file is validated against it (read-only)
def load_schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / name).read_text())


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


# keys that existed once: what a file that still has them should do instead
REMOVED_KEYS = {
    "noise": "'noise' allowances are gone: a claim's verdict now comes from the 95% confidence interval of "
             "its effect (README: Claims); delete the key",
}


def explain(error) -> str:
    """Turn a jsonschema error into 'key: what is wrong (allowed: ...)'."""
    # oneOf/anyOf errors hide the useful message in their context; take the deepest one.
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    key, schema = _key_path(error), error.schema
    if error.validator == "additionalProperties":
        unexpected = sorted(set(error.instance) - set(schema.get("properties", {})))
        removed = [k for k in unexpected if k in REMOVED_KEYS]
        if removed:
            return f"{key}.{removed[0]}: {REMOVED_KEYS[removed[0]]}"
        allowed = ", ".join(schema.get("properties", {})) or "none"
        return f"{key}: unknown key(s) {', '.join(unexpected)} (allowed: {allowed})"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not allowed (allowed: {', '.join(map(str, error.validator_value))})"
    if error.validator == "propertyNames":
        return f"{key}: name {error.instance!r} must match {schema.get('pattern', error.validator_value)}"
    return f"{key}: {error.message}"


def validate(document, schema_name: str, source: str) -> None:
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise ConfigError(f"{source}: {explain(error)}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loading that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first at line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path):
    """A YAML file as data; a file that is not UTF-8, not YAML, or repeats a key is one ConfigError line."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8, or move "
                          f"files that are not replications out of the folder") from None
    except yaml.MarkedYAMLError as err:
        parts = [f"{text} at line {mark.line + 1}" if mark else text
                 for text, mark in ((err.context, err.context_mark), (err.problem, err.problem_mark)) if text]
        raise ConfigError(f"{path}: not valid YAML ({', '.join(parts)})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None


