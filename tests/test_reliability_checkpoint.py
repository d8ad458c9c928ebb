"""Checkpoints under faults: hostile, damaged, foreign, old and GPU-made files."""

import builtins
import io
import zipfile

import pytest
import torch

from abcrnn import checkpoint as checkpoint_module
from abcrnn.checkpoint import (
    FORMAT_VERSION,
    build_model,
    load_checkpoint,
    load_for_sampling,
    load_weights,
    save_checkpoint,
)
from abcrnn.cli import main
from abcrnn.errors import CheckpointError, VocabularyError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.sampling import SampleConfig, generate_tunes
from abcrnn.training import train
from abcrnn.vocabulary import Vocabulary
from ml_support import TUNES, tiny_config, write_corpus

VOCAB = Vocabulary.from_text(TUNES)
GREEDY = SampleConfig(num_tunes=1, prime="X:", temperature=0, max_length=60)


def make_model(num_layers: int = 1) -> CharRNN:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=len(VOCAB), embedding_dim=4, hidden_size=6, num_layers=num_layers
    )
    return CharRNN(config)


def write_checkpoint(path, model=None, **changes):
    """Save a small but complete checkpoint, optimizer state included."""
    model = model or make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.zeros(1, 3, dtype=torch.long))[0].sum().backward()
    optimizer.step()
    fields = dict(
        model=model,
        vocabulary=VOCAB.to_dict(),
        train_config={"lr": 0.01},
        step=5,
        optimizer=optimizer.state_dict(),
        rng={"torch": torch.get_rng_state()},
    )
    save_checkpoint(path, **(fields | changes))
    return model


def resave(path, **changes):
    """Rewrite a checkpoint with some entries changed (None removes an entry)."""
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    torch.save(payload, path)


def claim_cuda(path):
    """Rewrite a checkpoint so that every tensor is recorded as saved on cuda:0.

    torch.save records each storage's device as a pickled string ("cpu") in
    data.pkl, and a checkpoint written on a GPU contains "cuda:0" there instead.
    """
    cpu = b"X\x03\x00\x00\x00cpu"  # BINUNICODE: opcode, 4-byte length, text
    cuda = b"X\x06\x00\x00\x00cuda:0"
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as target:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                assert cpu in data
                data = data.replace(cpu, cuda)
            target.writestr(info, data)
    path.write_bytes(buffer.getvalue())


class RunsCode:
    """An object whose unpickling calls exec, which writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        source = f"open({str(self.marker)!r}, 'w').write('ran')"
        return builtins.exec, (source,)


# Hostile and damaged files.


def test_pickled_code_is_never_run(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "marker"
    write_checkpoint(path)
    resave(path, extra=RunsCode(marker))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert f"cannot read checkpoint {path}" in message
    assert "contains a pickled Python object" in message
    assert "exec" in message
    assert "weights_only` set to `False`" not in message  # no unsafe advice
    assert not marker.exists()


def test_pickled_code_from_cli_exits_2(tmp_path, capsys):
    path, marker = tmp_path / "evil.pt", tmp_path / "marker"
    write_checkpoint(path)
    resave(path, extra=RunsCode(marker))
    assert main(["generate", str(path), "--no-render", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "contains a pickled Python object" in error
    assert not marker.exists()


def damage(path, kind):
    """Replace the checkpoint at `path` with a damaged or foreign file."""
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped bytes":
        path.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:400]))
    elif kind == "text":
        path.write_text('{"model": "not a checkpoint"}')
    elif kind == "other zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "a zip file that torch did not write")


@pytest.mark.parametrize(
    "kind", ["truncated", "empty", "flipped bytes", "text", "other zip"]
)
def test_damaged_file_error_names_it(tmp_path, kind):
    path = tmp_path / "last.pt"
    write_checkpoint(path)
    damage(path, kind)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert f"cannot read checkpoint {path}" in str(error.value)
    assert "use another checkpoint" in str(error.value)


def test_unreadable_file_error_names_it(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    write_checkpoint(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint_module.torch, "load", refuse)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value) == (
        f"cannot read checkpoint {path}: Permission denied; check that the file is "
        "readable"
    )


def test_missing_checkpoint_from_cli(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "last.pt"
    assert main(["generate", str(missing), "--no-render"]) == 2
    assert f"checkpoint or run folder not found: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": None}, "is not an abcrnn checkpoint (no format_version"),
        ({"vocabulary": None}, "lacks the entries vocabulary"),
        ({"model": [1, 2]}, "model is a list, not a dict"),
        ({"step": "5"}, "step is a str, not a int"),
        ({"step": -1}, "step is -1, below 0"),
        ({"vocabulary": {"chars": "ab"}}, "vocabulary is invalid"),
        ({"vocabulary": {"chars": ["b", "a"]}}, "vocabulary is invalid"),
        ({"train_config": [1]}, "train_config is a list, not a dict"),
        ({"model": {"head.weight": "zeros"}}, "model contains values that are not"),
    ],
)
def test_foreign_payload_is_explained(tmp_path, changes, message):
    path = tmp_path / "odd.pt"
    write_checkpoint(path)
    resave(path, **changes)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_weights_only_file_from_cli(tmp_path, capsys):
    # A bare state dict has no settings or vocabulary to rebuild the model from.
    path = tmp_path / "weights.pt"
    torch.save(make_model().state_dict(), path)
    assert main(["generate", str(path), "--no-render"]) == 2
    error = capsys.readouterr().err
    assert "is not an abcrnn checkpoint" in error
    assert "a state dict of weights only" in error


# Format versions.


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (0, "format version 0, which no abcrnn release wrote"),
        (-3, "format version -3, which no abcrnn release wrote"),
        ("1", "format version '1', which no abcrnn release wrote"),
        (True, "format version True, which no abcrnn release wrote"),
        (FORMAT_VERSION + 1, f"format version {FORMAT_VERSION + 1}, written by"),
    ],
)
def test_unreadable_format_version(tmp_path, version, message):
    path = tmp_path / "last.pt"
    write_checkpoint(path)
    resave(path, format_version=version, abcrnn_version="9.9.9")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert message in str(error.value)
    assert f"reads format versions 1 to {FORMAT_VERSION}" in str(error.value)


def test_future_version_says_upgrade(tmp_path):
    path = tmp_path / "last.pt"
    write_checkpoint(path)
    resave(path, format_version=FORMAT_VERSION + 1, abcrnn_version="9.9.9")
    with pytest.raises(CheckpointError, match="written by abcrnn 9.9.9.*upgrade"):
        load_checkpoint(path)


def test_current_version_loads(tmp_path):
    path = tmp_path / "last.pt"
    write_checkpoint(path)
    assert load_checkpoint(path)["format_version"] == FORMAT_VERSION == 1


# Checkpoints from a GPU or a distributed run, used on a CPU.


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_checkpoint_needs_cpu_mapping(tmp_path):
    path = tmp_path / "gpu.pt"
    write_checkpoint(path)
    claim_cuda(path)
    with pytest.raises(RuntimeError, match="deserialize object on a CUDA device"):
        torch.load(path, weights_only=True)


def test_gpu_checkpoint_loads_on_cpu(tmp_path):
    original, gpu = tmp_path / "cpu.pt", tmp_path / "gpu.pt"
    model = write_checkpoint(original)
    gpu.write_bytes(original.read_bytes())
    claim_cuda(gpu)

    payload = load_checkpoint(gpu)
    assert all(tensor.device.type == "cpu" for tensor in payload["model"].values())
    moments = payload["optimizer"]["state"][0]["exp_avg"]
    assert moments.device.type == "cpu"
    loaded, vocab, info = load_for_sampling(gpu, "cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert (
        generate_tunes(loaded, vocab, GREEDY).tunes
        == generate_tunes(model.eval(), VOCAB, GREEDY).tunes
    )


def test_load_maps_to_cpu(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    write_checkpoint(path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", spy)
    load_for_sampling(path, "cpu")
    assert calls == [{"map_location": "cpu", "weights_only": True}]


def test_distributed_prefix_loads(tmp_path):
    path = tmp_path / "ddp.pt"
    model = write_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    resave(path, model={f"module.{k}": v for k, v in payload["model"].items()})

    loaded, vocab, _ = load_for_sampling(path, "cpu")
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert (
        generate_tunes(loaded, vocab, GREEDY).tunes
        == generate_tunes(model.eval(), VOCAB, GREEDY).tunes
    )


def test_resume_of_gpu_run_on_cpu(tmp_path, caplog):
    # A CUDA run also saves CUDA random states. Its batch generator's state has
    # another size (16 bytes), so the CPU run reseeds that generator with a warning.
    corpus = write_corpus(tmp_path)
    config = tiny_config(corpus, steps=3)
    train(config, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    rng = torch.load(last, weights_only=True)["rng"]
    rng["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    rng["batches"] = torch.zeros(16, dtype=torch.uint8)
    resave(last, rng=rng)
    claim_cuda(last)

    result = train(tiny_config(corpus, steps=5), tmp_path / "run", resume=True)
    assert result.status == "finished"
    assert load_checkpoint(last)["step"] == 5
    assert "written on another kind of device" in caplog.text


# Vocabulary and model shape that do not fit.


def test_resume_on_corpus_with_new_characters(tmp_path, capsys):
    corpus = write_corpus(tmp_path)
    train(tiny_config(corpus, steps=2), tmp_path / "run")
    corpus.write_text(TUNES + "\nX:9\nT:Réel\nK:G\n|GABc ~d2B2|\n", encoding="utf-8")
    with pytest.raises(VocabularyError) as error:
        train(tiny_config(corpus, steps=4), tmp_path / "run", resume=True)
    message = str(error.value)
    assert "2 character(s) that the checkpoint's vocabulary lacks: '~', 'é'" in message
    assert "resume with the corpus the run started with" in message

    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "4"]) == 2
    assert "lacks: '~', 'é'" in capsys.readouterr().err


def test_other_num_layers_names_mismatch(tmp_path):
    path = tmp_path / "two.pt"
    write_checkpoint(path, model=make_model(num_layers=2))
    payload = load_checkpoint(path)
    assert build_model(payload).config.num_layers == 2
    with pytest.raises(CheckpointError) as error:
        load_weights(make_model(num_layers=1), payload["model"])
    assert "num_layers is 2 in the checkpoint but 1 in the model" in str(error.value)
