"""Training settings as a frozen dataclass, and the named presets.

This module imports no torch, so the command line can build its parser quickly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from abcrnn.errors import ConfigError

CELLS = ("lstm", "gru", "rnn")
OPTIMIZERS = ("adam", "adamw", "adagrad", "rmsprop", "sgd")
LR_SCHEDULES = ("constant", "cosine", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")
BF16_MODES = ("auto", "on", "off")
TRACKERS = ("none", "comet")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run; each field is also a `abcrnn train` flag.

    Units: `lr` and `min_lr` per optimizer step, `steps` and the `*_every` intervals
    in optimizer steps (0 turns an interval off), `seq_len` and `sample_max_length`
    in characters, `grad_clip` as a maximum gradient L2 norm (0 = off).
    """

    # Corpus: sources and how tunes are cleaned and split.
    corpus: tuple[str, ...] = ("oneills1850",)
    normalise: bool = True
    drop_titles: bool = False
    drop_chords: bool = False
    drop_decorations: bool = False
    deduplicate: bool = True
    valid_fraction: float = 0.1

    # Model.
    embedding_dim: int = 128
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0
    cell: str = "lstm"

    # Optimisation.
    optimizer: str = "adam"
    lr: float = 5e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    min_lr: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    steps: int = 3000
    batch_size: int = 8
    seq_len: int = 100

    # Run control.
    seed: int = 0
    device: str = "auto"
    bf16: str = "auto"
    threads: int = 0
    eval_every: int = 100
    eval_batches: int = 20
    sample_every: int = 0
    sample_tunes: int = 4
    sample_max_length: int = 1000
    sample_temperature: float = 1.0
    sample_audio: bool = False
    log_every: int = 50
    checkpoint_every: int = 500
    tensorboard: bool = True
    tracker: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.corpus, str | list):
            source = (self.corpus,) if isinstance(self.corpus, str) else self.corpus
            object.__setattr__(self, "corpus", tuple(source))
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON-friendly values (corpus as a list)."""
        data = dataclasses.asdict(self)
        data["corpus"] = list(self.corpus)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from `to_dict` output; unknown keys raise ConfigError."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)


def _check_config(config: TrainConfig) -> None:
    """Raise ConfigError for the first setting that is out of range."""
    if not config.corpus:
        raise ConfigError("corpus is empty: name at least one source (--corpus ...)")
    for field in fields(config):
        if field.type == "float":
            value = getattr(config, field.name)
            _require(config, field.name, math.isfinite(value), "a finite number")

    positive = ("embedding_dim", "hidden_size", "num_layers", "steps", "batch_size")
    positive += ("seq_len", "eval_batches", "sample_tunes", "sample_max_length")
    for name in positive:
        _require(config, name, getattr(config, name) >= 1, "a positive integer")
    not_negative = ("warmup_steps", "threads", "eval_every", "sample_every")
    not_negative += ("log_every", "checkpoint_every")
    for name in not_negative:
        _require(config, name, getattr(config, name) >= 0, "an integer >= 0")
    _require(config, "valid_fraction", 0.0 <= config.valid_fraction < 1.0, "in [0, 1)")
    _require(config, "dropout", 0.0 <= config.dropout < 1.0, "in [0, 1)")
    _require(config, "lr", config.lr > 0.0, "> 0")
    _require(config, "min_lr", 0.0 <= config.min_lr <= config.lr, "in [0, lr]")
    _require(config, "weight_decay", config.weight_decay >= 0.0, ">= 0")
    _require(config, "grad_clip", config.grad_clip >= 0.0, ">= 0 (0 = off)")
    _require(config, "sample_temperature", config.sample_temperature >= 0.0, ">= 0")
    choices = {
        "cell": CELLS,
        "optimizer": OPTIMIZERS,
        "lr_schedule": LR_SCHEDULES,
        "device": DEVICES,
        "bf16": BF16_MODES,
        "tracker": TRACKERS,
    }
    for name, allowed in choices.items():
        _require(config, name, getattr(config, name) in allowed, f"one of {allowed}")


def _require(config: TrainConfig, name: str, ok: bool, rule: str) -> None:
    if not ok:
        value = getattr(config, name)
        raise ConfigError(f"{name} must be {rule}, got {value!r} (--{flag_name(name)})")


def flag_name(field_name: str) -> str:
    """Return the command-line flag for a field: `seq_len` -> `seq-len`."""
    return field_name.replace("_", "-")


# The lab's exact settings: one LSTM layer of 1024 units over 256-dimensional
# embeddings, Adam at a constant 5e-3, 3000 steps of 8 windows of 100 characters, no
# dropout and no gradient clipping. Validation is added so the run can be compared.
LAB = TrainConfig(
    embedding_dim=256,
    hidden_size=1024,
    num_layers=1,
    dropout=0.0,
    cell="lstm",
    optimizer="adam",
    lr=5e-3,
    lr_schedule="constant",
    grad_clip=0.0,
    steps=3000,
    batch_size=8,
    seq_len=100,
    eval_every=100,
    eval_batches=25,
    log_every=50,
    checkpoint_every=500,
)

# A smaller, regularised LSTM on longer and larger batches, with a cosine decay.
# Measured with `abcrnn train` on oneills1850 (475,470 training and 51,924 validation
# characters) on 2 CPU cores with AVX-512 BF16 that other jobs shared, so the wall
# times are upper bounds. Losses are nats per character on the same 200 validation
# windows of 100 characters:
#   default: 1000 steps, 903 s wall, 365 CPU-seconds, best 1.226 (at step 1000);
#            a timing loop of the same model gave 15,100 char/s on a nearly idle
#            machine, an estimated 6 minutes for the run.
#   lab:     --bf16 off, as in the lab: 3000 steps, 2940 s wall, 1690 CPU-seconds,
#            best 1.338 (at step 3000; 1.389 at step 1300).
# The learning rate was 4e-3 for the figures above. With 10 validation batches and
# Adam's fused kernels, 1000 steps on oneills1850 reached a best validation loss of
# 1.1787 nats at lr 4e-3, 1.1733 at 6e-3 and 1.1760 at 8e-3. On the lab's tunes 6e-3
# reached the lab's best validation loss after 225 steps against 275 for 4e-3.
# With the fused LSTM step (abcrnn.cell_kernels) the 1000 steps took 131 s and
# reached 1.1698. With dropout masks still from torch.rand, 50 warm-up steps
# reached 1.1726 and 20 steps 1.1864, though 20 passed the lab's loss sooner.
# NOTE: without bfloat16 autocast (CPUs lacking AVX-512 BF16 or AMX) training ran
# at 19,000-21,000 char/s here against 38,000-43,000, about 4.5 minutes for the run.
DEFAULT = TrainConfig(
    embedding_dim=64,
    hidden_size=512,
    num_layers=1,
    dropout=0.25,
    cell="lstm",
    optimizer="adam",
    lr=6e-3,
    lr_schedule="cosine",
    warmup_steps=50,
    min_lr=2e-4,
    grad_clip=1.0,
    steps=1000,
    batch_size=32,
    seq_len=160,
    eval_every=100,
    eval_batches=10,
    sample_every=500,
    log_every=50,
    checkpoint_every=250,
)

PRESETS: dict[str, TrainConfig] = {"default": DEFAULT, "lab": LAB}


def resolve_config(preset: str, overrides: dict[str, Any]) -> TrainConfig:
    """Return the named preset with `overrides` applied (None values are skipped)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    changes = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(PRESETS[preset], **changes)
