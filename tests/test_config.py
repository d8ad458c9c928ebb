"""TrainConfig checks and the presets."""

import dataclasses

import pytest

from abcrnn.config import LAB, PRESETS, TrainConfig, resolve_config
from abcrnn.errors import ConfigError


def test_lab_preset_is_the_lab_settings():
    assert LAB.embedding_dim == 256
    assert LAB.hidden_size == 1024
    assert LAB.num_layers == 1
    assert LAB.cell == "lstm"
    assert LAB.batch_size == 8
    assert LAB.seq_len == 100
    assert LAB.optimizer == "adam"
    assert LAB.lr == 5e-3
    assert LAB.lr_schedule == "constant"
    assert LAB.warmup_steps == 0
    assert LAB.steps == 3000
    assert LAB.dropout == 0.0
    assert LAB.grad_clip == 0.0
    assert LAB.weight_decay == 0.0


def test_default_preset_is_smaller_and_regularised():
    default = PRESETS["default"]
    assert default.hidden_size < LAB.hidden_size
    assert default.dropout > 0
    assert default.lr_schedule == "cosine"
    assert default.batch_size * default.seq_len > LAB.batch_size * LAB.seq_len


def test_resolve_config_applies_overrides():
    config = resolve_config("lab", {"steps": 10, "lr": None, "corpus": ("a.abc",)})
    assert config.steps == 10
    assert config.lr == 5e-3
    assert config.corpus == ("a.abc",)
    assert config.hidden_size == 1024


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        resolve_config("huge", {})


def test_dict_round_trip():
    config = dataclasses.replace(LAB, corpus=("a.abc", "b"), dropout=0.1)
    data = config.to_dict()
    assert data["corpus"] == ["a.abc", "b"]
    assert TrainConfig.from_dict(data) == config


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "blue"})


def test_corpus_string_becomes_tuple():
    assert TrainConfig(corpus="tunes.abc").corpus == ("tunes.abc",)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer, got 0 (--steps)"),
        ({"seq_len": -5}, "seq_len must be a positive integer, got -5 (--seq-len)"),
        ({"eval_every": -1}, "eval_every must be an integer >= 0"),
        ({"valid_fraction": 1.0}, "valid_fraction must be in [0, 1), got 1.0"),
        ({"dropout": -0.1}, "dropout must be in [0, 1)"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0 (--lr)"),
        ({"lr": 0.001, "min_lr": 0.01}, "min_lr must be in [0, lr], got 0.01"),
        ({"grad_clip": -1.0}, "grad_clip must be >= 0 (0 = off)"),
        ({"optimizer": "lion"}, "optimizer must be one of ('adam', 'adamw'"),
        ({"cell": "lstmx"}, "cell must be one of"),
        ({"device": "tpu"}, "device must be one of"),
        ({"bf16": "yes"}, "bf16 must be one of ('auto', 'on', 'off')"),
        ({"tracker": "wandb"}, "tracker must be one of ('none', 'comet')"),
        ({"corpus": ()}, "corpus is empty"),
    ],
)
def test_bad_settings_raise(changes, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**changes)
    assert message in str(error.value)
