"""Saving and loading checkpoints: round trip, atomic writes and clear errors."""

import fractions

import pytest
import torch

from abcrnn import checkpoint as checkpoint_module
from abcrnn.checkpoint import (
    FORMAT_VERSION,
    build_model,
    check_model_config,
    load_checkpoint,
    load_for_sampling,
    save_checkpoint,
    strip_prefixes,
)
from abcrnn.errors import CheckpointError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.vocabulary import Vocabulary

VOCAB = Vocabulary.from_text("X:1\nABC|")


def make_model(**changes) -> CharRNN:
    torch.manual_seed(0)
    settings = dict(vocab_size=len(VOCAB), embedding_dim=4, hidden_size=5) | changes
    return CharRNN(ModelConfig(**settings))


def save(path, model=None, **changes):
    model = model or make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.zeros(1, 3, dtype=torch.long))[0].sum().backward()
    optimizer.step()
    fields = dict(
        model=model,
        vocabulary=VOCAB.to_dict(),
        train_config={"lr": 0.1, "corpus": ["a.abc"]},
        step=7,
        best_val_loss=1.25,
        optimizer=optimizer.state_dict(),
        rng={"torch": torch.get_rng_state()},
    )
    save_checkpoint(path, **(fields | changes))
    return model, optimizer


def test_round_trip(tmp_path):
    path = tmp_path / "last.pt"
    model, optimizer = save(path)
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION
    assert loaded["step"] == 7
    assert loaded["best_val_loss"] == 1.25
    assert loaded["train_config"] == {"lr": 0.1, "corpus": ["a.abc"]}
    assert loaded["model_config"] == model.config.to_dict()
    assert Vocabulary.from_dict(loaded["vocabulary"]) == VOCAB
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded["model"][name], tensor)
    moments = loaded["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(moments, optimizer.state_dict()["state"][0]["exp_avg"])


def test_build_model_copies_weights(tmp_path):
    path = tmp_path / "last.pt"
    model, _ = save(path)
    rebuilt = build_model(load_checkpoint(path))
    assert rebuilt.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save(path)
    before = path.read_bytes()

    def broken_save(payload, file):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(CheckpointError) as error:
        save(path, step=8)
    assert "disk full (the previous file is unchanged)" in str(error.value)
    assert path.read_bytes() == before
    assert [item.name for item in tmp_path.iterdir()] == ["last.pt"]


def test_strip_prefixes():
    state = {"module.head.bias": 1, "_orig_mod.rnn.weight": 2, "embedding.weight": 3}
    assert strip_prefixes(state) == {
        "head.bias": 1,
        "rnn.weight": 2,
        "embedding.weight": 3,
    }


def test_prefixed_state_dict_loads(tmp_path):
    # A state dict saved from a DataParallel wrapper has "module." keys.
    path = tmp_path / "wrapped.pt"
    model, _ = save(path)
    payload = torch.load(path, weights_only=True)
    payload["model"] = {f"module.{k}": v for k, v in payload["model"].items()}
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert set(loaded["model"]) == set(model.state_dict())
    build_model(loaded)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_truncated_file(tmp_path):
    path = tmp_path / "last.pt"
    save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a PyTorch"):
        load_checkpoint(path)


def test_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_weights_only_file_is_foreign(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(make_model().state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "not an abcrnn checkpoint" in str(error.value)
    assert "a state dict of weights only" in str(error.value)


def test_pickled_objects_are_never_loaded(tmp_path):
    # weights_only loading rejects arbitrary classes instead of running their code.
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": fractions.Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "future.pt"
    save(path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    payload["abcrnn_version"] = "9.0"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert f"format version {FORMAT_VERSION + 1}" in str(error.value)
    assert "upgrade abcrnn" in str(error.value)


def test_model_config_mismatch_names_field():
    saved = ModelConfig(vocab_size=9, num_layers=1, hidden_size=32).to_dict()
    requested = ModelConfig(vocab_size=9, num_layers=2, hidden_size=32)
    with pytest.raises(CheckpointError) as error:
        check_model_config(saved, requested)
    message = str(error.value)
    assert "num_layers is 1 in the checkpoint but 2 here" in message
    assert "hidden_size" not in message


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "last.pt"
    save(path)
    payload = load_checkpoint(path)
    payload["model_config"]["hidden_size"] = 6
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        build_model(payload)


def test_load_for_sampling_prefers_best(tmp_path):
    folder = tmp_path / "checkpoints"
    save(folder / "last.pt", step=10)
    save(folder / "best.pt", step=4)
    model, vocab, info = load_for_sampling(tmp_path)
    assert info["path"] == folder / "best.pt"
    assert info["step"] == 4
    assert vocab == VOCAB
    assert not model.training


def test_load_for_sampling_falls_back_to_last(tmp_path):
    save(tmp_path / "checkpoints" / "last.pt", step=10)
    _, _, info = load_for_sampling(tmp_path)
    assert info["path"] == tmp_path / "checkpoints" / "last.pt"
    _, _, direct = load_for_sampling(tmp_path / "checkpoints" / "last.pt")
    assert direct["step"] == 10


def test_load_for_sampling_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_for_sampling(tmp_path)
