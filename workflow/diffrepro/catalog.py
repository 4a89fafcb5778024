"""What each component accepts, declared once and without torch, so a replication is checked before any job.

A component (a schedule, sampler, loss, parameterisation or the UNet) lists its options with their
types, ranges and defaults, plus the rules that tie options together (sigma_min below sigma_max, ...).
replications.load_replications checks every experiment against these declarations and turns the first
problem into one ConfigError line naming the file and key; tests/test_catalog.py keeps each
declaration equal to the signature of the function it configures.
"""

import math
import re
from dataclasses import dataclass, field

NUMBER = (int, float)
AUX_NAME = re.compile(r"[a-z0-9_]+/[a-z0-9_]+")


@dataclass(frozen=True)
class Option:
    kinds: tuple  # accepted Python types (bool is never a number here)
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple = ()

    def problem(self, value) -> str | None:
        """Why `value` is not allowed, or None."""
        if (isinstance(value, bool) and bool not in self.kinds) or not isinstance(value, self.kinds):
            return f"{value!r} is not {self.kind_name()}"
        if self.choices and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.minimum is not None:
            if value < self.minimum or (self.exclusive_minimum and value == self.minimum):
                return f"{value!r} must be {'above' if self.exclusive_minimum else 'at least'} {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"{value!r} must be at most {self.maximum:g}"
        return None

    def kind_name(self) -> str:
        if float in self.kinds:
            return "a number"
        names = {int: "an integer", bool: "true or false", str: "a string", list: "a list"}
        return " or ".join(names[k] for k in self.kinds if k in names)


def number(default, minimum=None, maximum=None, exclusive_minimum=False) -> Option:
    return Option(NUMBER, default, minimum, maximum, exclusive_minimum)


def integer(default, minimum=None, maximum=None) -> Option:
    return Option((int,), default, minimum, maximum)


def flag(default) -> Option:
    return Option((bool,), default)


def choice(default, *choices) -> Option:
    return Option((str,), default, choices=choices)


@dataclass(frozen=True)
class Rule:
    """A condition on a component's options (defaults filled in) and what to say when it fails."""
    holds: object  # callable(options) -> bool
    message: object  # a str formatted with the options, or callable(options) -> str


@dataclass(frozen=True)
class Component:
    options: dict = field(default_factory=dict)
    rules: tuple = ()
    aux: tuple = ()  # options naming an auxiliary network (a path at run time, a name in YAML)

    def problems(self, given: dict):
        """(key or None, message) for each unknown option, bad value or broken rule in `given`."""
        for key, value in given.items():
            if key not in self.options and key not in self.aux:
                allowed = ", ".join([*self.options, *self.aux]) or "none"
                yield key, f"unknown option {key!r} (allowed: {allowed})"
            elif key in self.aux and not (isinstance(value, str) and AUX_NAME.fullmatch(value)):
                yield key, f"{value!r} must name an auxiliary network as 'paper/name'"
        bad = False
        for key, value in given.items():
            option = self.options.get(key)
            why = option.problem(value) if option is not None else None
            if why:
                bad = True
                yield key, why
        if bad:
            return
        values = {**{k: o.default for k, o in self.options.items()}, **given}
        for rule in self.rules:
            if not rule.holds(values):
                yield None, rule.message(values) if callable(rule.message) else rule.message.format(**values)


def _below(low: str, high: str) -> Rule:
    return Rule(lambda o: o[low] < o[high], f"{low} ({{{low}}}) must be below {high} ({{{high}}})")


PROBABILITY = dict(minimum=0.0, maximum=1.0, exclusive_minimum=True)
STEPS = integer(1000, minimum=1)

# diffrepro.schedules.SCHEDULES
SCHEDULES = {
    "linear_beta": Component({"T": STEPS, "beta_min": number(1e-4, **PROBABILITY), "beta_max": number(0.02, **PROBABILITY)},
                             (_below("beta_min", "beta_max"),)),
    "iddpm_cosine": Component({"T": STEPS, "s": number(0.008, minimum=0.0), "max_beta": number(0.999, **PROBABILITY)}),
    "sohl_dickstein": Component({"T": STEPS, "step1_beta": number(1e-3, **PROBABILITY),
                                 "min_beta": number(1e-6, **PROBABILITY)}),
    "course_cosine": Component({"t_min": number(0.0, 0.0, 1.0), "t_max": number(0.999, 0.0, 1.0)},
                               (_below("t_min", "t_max"),)),
    "chen_simple_linear": Component({"t_min": number(0.0, 0.0, 1.0), "t_max": number(1.0, 0.0, 1.0)},
                                    (_below("t_min", "t_max"),)),
    "chen_cosine": Component({"start": number(0.0), "end": number(1.0), "tau": number(1.0, 0.0, exclusive_minimum=True),
                              "t_min": number(0.0, 0.0, 1.0), "t_max": number(1.0, 0.0, 1.0)},
                             (_below("start", "end"), _below("t_min", "t_max"))),
    "chen_sigmoid": Component({"start": number(-3.0), "end": number(3.0), "tau": number(1.0, 0.0, exclusive_minimum=True),
                               "t_min": number(0.0, 0.0, 1.0), "t_max": number(1.0, 0.0, 1.0)},
                              (_below("start", "end"), _below("t_min", "t_max"))),
    "edm": Component({"sigma_min": number(0.002, 0.0, exclusive_minimum=True),
                      "sigma_max": number(80.0, 0.0, exclusive_minimum=True), "rho": number(7.0, 0.0, exclusive_minimum=True),
                      "p_mean": number(-1.2), "p_std": number(1.2, 0.0, exclusive_minimum=True)},
                     (_below("sigma_min", "sigma_max"),)),
}
DISCRETE_SCHEDULES = ("linear_beta", "iddpm_cosine", "sohl_dickstein")

# diffrepro.samplers.SAMPLERS: the keyword options a YAML may set (generator, progress and callback are the
# workflow's). clip_x0 is a flag in YAML (the data range of the input scaling, build.sampler_options).
CLIP = flag(None)
SAMPLERS = {
    "ddpm_ancestral": Component({"variance": choice("large", "large", "small"), "clip_x0": CLIP}),
    "ddim": Component({"eta": number(0.0, minimum=0.0, maximum=1.0), "sigma_hat": flag(False), "clip_x0": CLIP,
                       "eps_from_clipped_x0": flag(True)}),
    "tfree_ddim": Component({"eta": number(1.0, minimum=0.0, maximum=1.0), "clamp_median": flag(True), "clip_x0": CLIP,
                             "eps_from_clipped_x0": flag(True)}, aux=("noise_level_predictor",)),
    "euler": Component(),
    "euler_ancestral": Component({"eta": number(1.0, minimum=0.0, maximum=1.0)}),
    "heun": Component({"s_churn": number(0.0, minimum=0.0), "s_tmin": number(0.0, minimum=0.0),
                       "s_tmax": number(math.inf, minimum=0.0), "s_noise": number(1.0, 0.0, exclusive_minimum=True)},
                      (Rule(lambda o: o["s_tmin"] <= o["s_tmax"], "s_tmin ({s_tmin}) must not exceed s_tmax ({s_tmax})"),)),
    "lms": Component({"order": integer(4, minimum=1, maximum=4)}),
    "dpmpp_2m": Component(),
}

# diffrepro.losses.LOSSES (the noise-level predictor's loss is the t-free stage's own, not a YAML choice)
DECODERS = ("discretised", "gaussian")
LOSSES = {
    "simple": Component(),
    "x0": Component(),
    "v": Component(),
    "edm": Component({"sigma_data": number(0.5, 0.0, exclusive_minimum=True)}),
    "vlb": Component({"decoder": choice("discretised", *DECODERS)}),
    "hybrid": Component({"vlb_weight": number(0.001, minimum=0.0), "decoder": choice("discretised", *DECODERS)}),
}

# diffrepro.denoisers.build_denoiser
VP_OPTIONS = {"data_multiplier": number(1.0, 0.0, exclusive_minimum=True), "normalise": flag(False),
              "variance": choice("large", "large", "small", "learned")}
PARAMETERISATIONS = {
    "eps": Component(VP_OPTIONS),
    "x0": Component(VP_OPTIONS),
    "v": Component(VP_OPTIONS),
    "edm": Component({"sigma_data": number(0.5, 0.0, exclusive_minimum=True), "c_noise": choice("log", "log", "sigma")}),
    "tfree": Component(),
    "sohl_dickstein": Component(),
    "mu": Component({"variance": choice("large", "large", "small", "learned")}),
    "eps_learned_variance": Component(),
}

# diffrepro.models.unet.UNet (in_channels comes from the data set)
NETWORK = Component(
    {"channels": Option((list, tuple), (32, 64, 128)), "blocks_per_level": integer(1, minimum=1),
     "attention_levels": Option((list, tuple), (2,)), "groups": integer(8, minimum=1),
     "dropout": number(0.0, minimum=0.0, maximum=0.999), "time_multiplier": number(1.0, 0.0, exclusive_minimum=True),
     "time_conditioning": flag(True), "out_channels": integer(None, minimum=1)},
    (Rule(lambda o: all(c % o["groups"] == 0 for c in o["channels"]),
          "every width in channels {channels} must be divisible by groups ({groups})"),
     Rule(lambda o: all(0 <= a < len(o["channels"]) for a in o["attention_levels"]),
          lambda o: f"attention_levels {list(o['attention_levels'])} must be levels of the UNet: channels "
                    f"{list(o['channels'])} has levels 0 to {len(o['channels']) - 1}")),
)

WORKFLOW_KEYWORDS = ("generator", "progress", "callback")  # what sampling passes itself, never a YAML option


def import_path(name: str):
    """The object `module:attribute` names (a user's sampler); ImportError or AttributeError if none."""
    import importlib

    module, attribute = name.split(":")
    return getattr(importlib.import_module(module), attribute)


def _option_from_default(default) -> Option:
    if isinstance(default, bool):
        return flag(default)
    if isinstance(default, int):
        return integer(default)
    if isinstance(default, float):
        return number(default)
    if isinstance(default, str):
        return Option((str,), default)
    return Option((bool, int, float, str, list), default)


def user_sampler(name: str) -> tuple:
    """(Component, None) declared by the signature of the sampler `module:function`, or (None, why not)."""
    import inspect

    try:
        fn = import_path(name)
    except (ImportError, AttributeError) as err:
        return None, f"cannot import {name} ({err}); put the module in the replications folder or install it"
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None, f"{name} is not a function"
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if len(positional) < 3 or any(p.default is p.empty for p in positional[3:]):
        return None, f"{name} must take (denoiser, x, sigmas) as its first three arguments"
    missing = [k for k in ("generator", "progress") if k not in params and not takes_any]
    if missing:
        return None, f"{name} must accept the keyword argument(s) {', '.join(missing)} (use them or ignore them)"
    options = {k: _option_from_default(p.default) for k, p in params.items()
               if p.kind == p.KEYWORD_ONLY and k not in WORKFLOW_KEYWORDS and p.default is not p.empty}
    return Component(options), None


def own_network_problem(network: dict) -> str | None:
    """Why {class: 'module:Class', kwargs} cannot be built, or None (imports the class: torch and all)."""
    import inspect

    try:
        cls = import_path(network["class"])
    except (ImportError, AttributeError) as err:
        return f"cannot import {network['class']} ({err}); install its package or put the module in the replications folder"
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return f"{network['class']} is not a class that can be called with keyword arguments"
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    unknown = sorted(set(network.get("kwargs", {})) - set(params))
    return f"{network['class']} takes no argument(s) {', '.join(unknown)}" if unknown else None


USER_SAMPLER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*")


def sampler_component(name: str) -> tuple:
    """(Component, None) of a library sampler or of a user's `module:function`, or (None, why not)."""
    if name in SAMPLERS:
        return SAMPLERS[name], None
    if not USER_SAMPLER.fullmatch(name):
        return None, f"unknown sampler {name!r} (allowed: {', '.join(SAMPLERS)}, or your own as 'module:function')"
    return user_sampler(name)


CATALOG = {"schedule": SCHEDULES, "sampler": SAMPLERS, "loss": LOSSES, "parameterisation": PARAMETERISATIONS}
