"""The design of a hyperparameter study: factors, budget and the runs they give.

A study varies some TrainConfig fields (the factors) around a base preset, and
gives every run the same budget of optimizer steps, training characters or
seconds. Four modes decide which runs are made:

    ofat    one factor at a time: the base run takes the middle value of each
            factor's list, and every other value is tried with the rest at base
    grid    every combination of the factors' values
    random  `trials` runs with values drawn at random from lists or ranges
    tpe     `trials` runs chosen by Optuna's TPE sampler from lists or ranges

This module imports neither torch nor optuna; `sweep_runner` runs the study and
`sweep_report` writes its report.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from abcrnn.atomic import write_text_atomic
from abcrnn.config import PRESETS, TrainConfig, resolve_config
from abcrnn.errors import ConfigError

MODES = ("ofat", "grid", "random", "tpe")
BUDGET_KINDS = ("steps", "chars", "seconds")
SPEC_FILE = "study.json"
RUNS_FOLDER = "runs"
FIELD_TYPES = {field.name: field.type for field in fields(TrainConfig)}
# Settings the study sets itself for each run, so they cannot be factors.
STUDY_OWNED = ("steps", "eval_every", "sample_every", "threads", "corpus")


@dataclass(frozen=True)
class Factor:
    """One varied setting: a list of values, or a range [low, high] for searches.

    A range on an int field draws integers; `log` draws evenly on a log scale.
    """

    name: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the factor as JSON-ready values."""
        if self.is_range:
            return {
                "name": self.name,
                "low": self.low,
                "high": self.high,
                "log": self.log,
            }
        return {"name": self.name, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Factor:
        """Build a factor from `to_dict` output."""
        if "values" in data:
            return cls(data["name"], tuple(data["values"]))
        return cls(data["name"], (), data["low"], data["high"], data["log"])


@dataclass(frozen=True)
class Budget:
    """The equal training budget of every run: an amount of steps, chars or seconds."""

    kind: str = "chars"
    amount: float = 4_000_000

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise ConfigError(
                f"budget kind must be one of {BUDGET_KINDS}, got {self.kind!r}"
            )
        if not self.amount > 0:
            raise ConfigError(
                f"the budget must be > 0 {self.kind}, got {self.amount} "
                f"(--budget-{self.kind})"
            )

    def steps_for(self, config: TrainConfig) -> int | None:
        """Return the optimizer steps this budget gives `config` (None for seconds)."""
        if self.kind == "steps":
            return max(1, int(self.amount))
        if self.kind == "chars":
            return max(1, round(self.amount / (config.batch_size * config.seq_len)))
        return None

    def describe(self) -> str:
        """Return the budget in words, e.g. "4,000,000 training characters"."""
        unit = {"steps": "optimizer steps", "chars": "training characters"}
        return f"{self.amount:,.0f} {unit.get(self.kind, 's of training')}"


DEFAULT_FACTORS = (
    Factor("hidden_size", (128, 256, 512)),
    Factor("lr", (1e-3, 3e-3, 1e-2)),
    Factor("seq_len", (50, 100, 200)),
)


@dataclass(frozen=True)
class StudySpec:
    """Everything that decides which runs a study makes and how each is scored.

    base: overrides applied to the preset for every run, as (name, value) pairs.
    trials: number of runs for the random and tpe modes.
    evals: validations per run, spread evenly over its steps.
    num_check_tunes: tunes sampled from each run's best checkpoint for the checker.
    """

    preset: str = "default"
    base: tuple[tuple[str, Any], ...] = ()
    factors: tuple[Factor, ...] = DEFAULT_FACTORS
    mode: str = "ofat"
    budget: Budget = Budget()
    trials: int = 20
    seed: int = 0
    evals: int = 20
    num_check_tunes: int = 20

    def __post_init__(self) -> None:
        _check_spec(self)

    @property
    def searches(self) -> bool:
        """True for the modes that sample values (random, tpe)."""
        return self.mode in ("random", "tpe")

    def base_config(self) -> TrainConfig:
        """Return the preset with the base overrides applied."""
        return resolve_config(self.preset, dict(self.base))

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready values."""
        data = dataclasses.asdict(self)
        data["base"] = {name: _json_value(value) for name, value in self.base}
        data["factors"] = [factor.to_dict() for factor in self.factors]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        """Build a spec from `to_dict` output."""
        changes = dict(data)
        changes["base"] = tuple(
            (name, parse_value(name, value)) for name, value in data["base"].items()
        )
        changes["factors"] = tuple(Factor.from_dict(item) for item in data["factors"])
        changes["budget"] = Budget(**data["budget"])
        return cls(**changes)


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_spec(spec: StudySpec) -> None:
    """Raise ConfigError for the first part of the spec that cannot run."""
    if spec.mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {spec.mode!r} (--mode)")
    if spec.preset not in PRESETS:
        raise ConfigError(
            f"unknown preset {spec.preset!r}; choose one of {sorted(PRESETS)}"
        )
    for name, minimum in (("trials", 1), ("evals", 1), ("num_check_tunes", 1)):
        if getattr(spec, name) < minimum:
            raise ConfigError(
                f"{name} must be >= {minimum}, got {getattr(spec, name)} "
                f"(--{name.replace('_', '-')})"
            )

    if not spec.factors:
        raise ConfigError("a study needs at least one factor (--factor NAME=V1,V2)")
    names = [factor.name for factor in spec.factors]
    if len(set(names)) != len(names):
        raise ConfigError(f"a factor is given twice: {names}")
    for factor in spec.factors:
        _check_factor(factor, spec.searches)

    base = spec.base_config()
    if base.valid_fraction <= 0:
        raise ConfigError(
            "the study scores runs on validation text, so valid_fraction must be > 0"
        )

    # Build each run's config now, so an invalid value fails before any training.
    if not spec.searches:
        for values in design_values(spec):
            run_config(spec, values, base.steps)  # raises for invalid combinations
        return
    for factor in spec.factors:
        ends = (factor.low, factor.high) if factor.is_range else factor.values
        for value in ends:
            if factor.is_range and FIELD_TYPES[factor.name] == "int":
                value = int(value)
            run_config(spec, {factor.name: value}, base.steps)


def _check_factor(factor: Factor, searches: bool) -> None:
    if factor.name not in FIELD_TYPES:
        raise ConfigError(
            f"unknown setting {factor.name!r} in --factor; use a TrainConfig field "
            "such as hidden_size, lr or seq_len (see abcrnn train --help)"
        )
    if factor.name in STUDY_OWNED:
        raise ConfigError(
            f"{factor.name} cannot be a factor: the study sets it for every run "
            "(use --budget-* for the run length)"
        )
    if factor.is_range:
        if not searches:
            raise ConfigError(
                f"--factor {factor.name}={factor.low}:{factor.high} is a range, which "
                "only the random and tpe modes can use; give a list of values "
                "(NAME=V1,V2,V3) or pick --mode random or tpe"
            )
        if FIELD_TYPES[factor.name] not in ("int", "float"):
            raise ConfigError(f"{factor.name} is not numeric, so give a list")
        if not factor.low < factor.high or (factor.log and factor.low <= 0):
            raise ConfigError(
                f"the range of {factor.name} must have 0 < low < high on a log "
                f"scale and low < high otherwise, got {factor.low}:{factor.high}"
            )
    elif not factor.values:
        raise ConfigError(f"--factor {factor.name} has no values")


def parse_value(name: str, text: Any) -> Any:
    """Convert `text` to the type of TrainConfig field `name`; raise ConfigError."""
    kind = FIELD_TYPES.get(name)
    if kind is None:
        raise ConfigError(
            f"unknown setting {name!r}; use a TrainConfig field (abcrnn train --help)"
        )
    if not isinstance(text, str):
        return tuple(text) if isinstance(text, list) else text
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name} must be true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if kind.startswith("tuple"):
        return tuple(part for part in text.split(",") if part)
    return text


def parse_setting(text: str) -> tuple[str, Any]:
    """Parse `NAME=VALUE` (as in --set) into the name and a typed value."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise ConfigError(f"expected NAME=VALUE, got {text!r} (e.g. --set dropout=0.1)")
    name = name.strip().replace("-", "_")
    return name, parse_value(name, value.strip())


def parse_factor(text: str) -> Factor:
    """Parse `NAME=V1,V2,...` (a list) or `NAME=LOW:HIGH[:log]` (a range)."""
    name, separator, rest = text.partition("=")
    name = name.strip().replace("-", "_")
    if not separator or not name or not rest.strip():
        raise ConfigError(
            f"expected NAME=V1,V2,... or NAME=LOW:HIGH[:log], got {text!r} "
            "(e.g. --factor hidden_size=128,256,512 or --factor lr=1e-4:1e-2:log)"
        )
    if ":" not in rest:
        values = tuple(parse_value(name, part.strip()) for part in rest.split(","))
        return Factor(name, tuple(dict.fromkeys(values)))
    parts = rest.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ConfigError(f"a range is LOW:HIGH or LOW:HIGH:log, got {rest!r}")
    low, high = (float(parse_value(name, part)) for part in parts[:2])
    return Factor(name, (), low, high, len(parts) == 3)


def base_values(spec: StudySpec) -> dict[str, Any]:
    """Return the base run's factor values: the middle value of each list."""
    return {
        factor.name: factor.values[len(factor.values) // 2] for factor in spec.factors
    }


def design_values(spec: StudySpec) -> list[dict[str, Any]]:
    """Return the factor values of each distinct run of an ofat or grid study.

    ofat lists the base run first, then each factor's other values in order, so
    the default study has 1 + 2 + 2 + 2 = 7 runs.
    """
    if spec.mode == "grid":
        names = [factor.name for factor in spec.factors]
        product = itertools.product(*(factor.values for factor in spec.factors))
        return [dict(zip(names, combination, strict=True)) for combination in product]
    base = base_values(spec)
    runs = {run_name(base): base}
    for factor in spec.factors:
        for value in factor.values:
            values = base | {factor.name: value}
            runs.setdefault(run_name(values), values)
    return list(runs.values())


def run_name(values: dict[str, Any]) -> str:
    """Return the run folder name for factor values, e.g. `hidden_size=256,lr=0.003`."""
    return ",".join(f"{name}={format_value(value)}" for name, value in values.items())


def format_value(value: Any) -> str:
    """Return a short text for a factor value: 6 significant digits for floats."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def run_config(
    spec: StudySpec, values: dict[str, Any], steps: int, threads: int = 0
) -> TrainConfig:
    """Return the TrainConfig of one run: base, factor values, steps and threads.

    Validation runs every steps // spec.evals steps, so about spec.evals times.
    When lr is a factor and min_lr is not, min_lr keeps the base's ratio to lr,
    so the decay has the same shape for every learning rate.
    """
    base = spec.base_config()
    changes = dict(values)
    if "lr" in values and "min_lr" not in values:
        changes["min_lr"] = base.min_lr * values["lr"] / base.lr
    eval_every = max(1, steps // spec.evals)
    changes |= {
        "steps": steps,
        "eval_every": eval_every,
        # The study's callback reports each validation to Optuna, so callbacks run
        # right after validations; no tunes are sampled during training.
        "sample_every": eval_every,
        "threads": threads,
    }
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as error:
        raise ConfigError(f"run {run_name(values)}: {error}") from None


def save_spec(study_dir: Path, spec: StudySpec) -> Path:
    """Write study_dir/study.json."""
    text = json.dumps(spec.to_dict(), indent=2) + "\n"
    return write_text_atomic(Path(study_dir) / SPEC_FILE, text)


def load_spec(study_dir: Path) -> StudySpec | None:
    """Return the spec saved in study_dir/study.json, or None when there is none."""
    path = Path(study_dir) / SPEC_FILE
    if not path.is_file():
        return None
    try:
        return StudySpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{path} is not a valid study description ({error}); "
            "start the study in a new --study-dir"
        ) from None


def same_design(saved: StudySpec, requested: StudySpec) -> bool:
    """Return True when two specs make the same runs (floats compared closely)."""
    return _close(saved.to_dict(), requested.to_dict())


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        both_numbers = isinstance(a, int | float) and isinstance(b, int | float)
        return both_numbers and math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_close, a, b))
    return a == b
