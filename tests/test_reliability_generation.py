"""Generation from trained runs: repeatable text, unknown prime characters, shapes."""

import pytest
import torch

from abcrnn.checkpoint import load_checkpoint, load_for_sampling, load_weights
from abcrnn.cli import main
from abcrnn.errors import CheckpointError, VocabularyError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.sampling import SampleConfig, default_prime, generate_tunes
from abcrnn.training import train
from abcrnn.vocabulary import Vocabulary
from ml_support import tiny_config

# Two tunes; generation from them must not depend on earlier calls.
SEED_TUNES = """X:1
T:Seed A
M:4/4
L:1/8
K:G
GABc d2B2|c2A2 G4|GABc d2g2|fedc B4|]

X:2
T:Seed B
M:6/8
L:1/8
K:D
FAd fed|e3 d3|FAd fed|c3 d3|]
"""

# A tune without a space: its vocabulary has exactly these 28 characters.
NO_SPACE_TUNE = "X:1\nT:Nospace\nM:2/4\nL:1/8\nK:C\nCDEF|GABc|cBAG|FEDC|]\n"
NO_SPACE_CHARS = tuple("\n/1248:ABCDEFGKLMNTX]aceops|")

# Two tunes for a two-layer model; the validation windows end in a short batch.
TWO_LAYER_TUNES = """X:1
T:Odd Length
M:3/4
L:1/8
K:A
A2 c2 e2|f2 e2 c2|d2 B2 G2|A6|
c2 e2 a2|g2 e2 c2|B2 d2 f2|e6|]

X:2
T:Odd Length Two
M:4/4
L:1/8
K:A
Acea gecA|Bdfb afdB|]
"""


def train_on(folder, text, **changes):
    """Train a tiny run on `text` in folder/run; return the run folder."""
    corpus = folder / "corpus.abc"
    corpus.write_text(text)
    run_dir = folder / "run"
    train(tiny_config(corpus, **changes), run_dir)
    return run_dir


# Repeatable generation: the same seed gives the same text, call after call.


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed")
    return train_on(folder, SEED_TUNES, seq_len=32, batch_size=4, steps=4)


def sample(model, vocab, seed):
    config = SampleConfig(num_tunes=1, prime="X:", max_length=200, seed=seed)
    return generate_tunes(model, vocab, config).tunes


def test_same_seed_same_text_in_one_process(seed_run):
    model, vocab, _ = load_for_sampling(seed_run, "cpu")
    first = sample(model, vocab, 123)
    assert sample(model, vocab, 123) == first
    assert sample(model, vocab, 124) != first
    assert first[0].startswith("X:")


def test_every_call_starts_from_zero_state(seed_run, monkeypatch):
    model, vocab, _ = load_for_sampling(seed_run, "cpu")
    first_states = []
    forward = model.forward

    def spy(x, state=None):
        if x.size(1) > 1:  # the prime, run first in each call
            first_states.append(state)
        return forward(x, state)

    monkeypatch.setattr(model, "forward", spy)
    sample(model, vocab, 123)
    sample(model, vocab, 123)
    assert len(first_states) == 2
    for h, c in first_states:
        assert h.shape == c.shape == (1, 1, 32)  # (num_layers, tunes, hidden_size)
        assert not h.any()
        assert not c.any()


def test_same_seed_same_files_from_cli(seed_run, tmp_path):
    for name in ("a", "b"):
        argv = ["generate", str(seed_run), "--out", str(tmp_path / name)]
        argv += ["--seed", "123", "--prime", "X:", "--max-length", "200"]
        assert main(argv + ["--no-render", "--device", "cpu"]) in (0, 1)
    first = (tmp_path / "a" / "tunes.abc").read_bytes()
    assert first == (tmp_path / "b" / "tunes.abc").read_bytes()
    assert first.startswith(b"X:")


# A vocabulary without a space; primes with characters outside it.


@pytest.fixture(scope="module")
def no_space_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no-space")
    return train_on(
        folder, NO_SPACE_TUNE, seq_len=16, batch_size=2, steps=2, valid_fraction=0
    )


def test_vocabulary_without_space(no_space_run):
    chars = load_checkpoint(no_space_run / "checkpoints" / "last.pt")["vocabulary"]
    assert tuple(chars["chars"]) == NO_SPACE_CHARS
    assert default_prime(Vocabulary(NO_SPACE_CHARS)) == "X:1\n"


def test_default_prime_works_without_space(no_space_run, tmp_path):
    argv = ["generate", str(no_space_run), "--out", str(tmp_path), "--no-render"]
    assert main(argv + ["--max-length", "50", "--device", "cpu"]) in (0, 1)
    assert (tmp_path / "tune-01.abc").read_text().startswith("X:1\n")


def test_prime_with_unknown_characters(no_space_run, tmp_path, capsys):
    argv = ["generate", str(no_space_run), "--out", str(tmp_path), "--no-render"]
    argv += ["--prime", "X:1\nT:Café Reel\n", "--max-length", "80"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert (
        "the prime contains 5 character(s) that the model never saw: ' ', 'R', "
        "'f', 'l', 'é'; remove them from --prime"
    ) in error
    assert "Traceback" not in error
    assert not (tmp_path / "tunes.abc").exists()


def test_prime_with_unknown_characters_in_library():
    model = CharRNN(ModelConfig(vocab_size=len(NO_SPACE_CHARS), hidden_size=4))
    config = SampleConfig(prime="X:1\nT:Café Reel\n")
    with pytest.raises(VocabularyError, match="5 character"):
        generate_tunes(model, Vocabulary(NO_SPACE_CHARS), config)


def test_max_length_counts_new_characters():
    # A model that always predicts "A": greedy sampling adds exactly 3 of them.
    vocab = Vocabulary(NO_SPACE_CHARS)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), embedding_dim=2, hidden_size=3))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[vocab.encode("A")[0]] = 5.0
    config = SampleConfig(prime="X:1\nT:", temperature=0, max_length=3)
    result = generate_tunes(model, vocab, config)
    assert result.tunes == ["X:1\nT:AAA"]
    assert result.unfinished == 1


def test_max_length_below_prime_from_cli(no_space_run, tmp_path, capsys):
    argv = ["generate", str(no_space_run), "--out", str(tmp_path), "--no-render"]
    argv += ["--prime", "X:1\nT:", "--max-length", "3", "--num-tunes", "1"]
    code = main(argv)
    tune = (tmp_path / "tune-01.abc").read_text().rstrip()
    assert tune.startswith("X:1\nT:")
    assert len(tune) <= 9
    assert code == (1 if "reached --max-length 3" in capsys.readouterr().out else 0)


# A two-layer model: state shapes follow the batch, and the checkpoint rebuilds it.


@pytest.fixture(scope="module")
def two_layer_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-layer")
    return train_on(
        folder,
        TWO_LAYER_TUNES,
        num_layers=2,
        hidden_size=32,
        seq_len=10,
        batch_size=4,
        steps=3,
        valid_fraction=0.5,
        eval_batches=4,
    )


def test_state_shapes_follow_batch(tmp_path, monkeypatch):
    shapes = []
    initial_state = CharRNN.initial_state

    def spy(self, batch_size, device):
        state = initial_state(self, batch_size, device)
        shapes.append(tuple(state[0].shape))
        return state

    monkeypatch.setattr(CharRNN, "initial_state", spy)
    run_dir = train_on(
        tmp_path,
        TWO_LAYER_TUNES,
        num_layers=2,
        hidden_size=32,
        seq_len=10,
        batch_size=4,
        steps=2,
        valid_fraction=0.5,
        eval_every=2,
        eval_batches=4,
    )
    # Two training steps of 4 windows, then validation: the held-out tune (X:1, 98
    # characters with its blank line) gives 9 windows of 10, in batches 4, 4, 1.
    assert shapes == [(2, 4, 32), (2, 4, 32), (2, 4, 32), (2, 4, 32), (2, 1, 32)]

    shapes.clear()
    model, vocab, _ = load_for_sampling(run_dir, "cpu")
    config = SampleConfig(num_tunes=1, prime="X:", max_length=60)
    result = generate_tunes(model, vocab, config)
    assert shapes == [(2, 1, 32)]
    assert len(result.tunes) == 1
    assert result.tunes[0].startswith("X:")


def test_checkpoint_rebuilds_two_layers(two_layer_run):
    model, _, _ = load_for_sampling(two_layer_run, "cpu")
    assert model.config.num_layers == 2
    assert model.config.hidden_size == 32


def test_one_layer_model_names_mismatch(two_layer_run):
    payload = load_checkpoint(two_layer_run / "checkpoints" / "last.pt")
    config = ModelConfig(**(payload["model_config"] | {"num_layers": 1}))
    with pytest.raises(CheckpointError) as error:
        load_weights(CharRNN(config), payload["model"])
    assert "num_layers is 2 in the checkpoint but 1 in the model" in str(error.value)


def test_resume_with_other_num_layers(two_layer_run, capsys):
    argv = ["train", "--resume", str(two_layer_run), "--num-layers", "1"]
    assert main(argv + ["--steps", "5"]) == 2
    error = capsys.readouterr().err
    assert "--num-layers cannot change when resuming" in error
    assert "num_layers=2" in error
