"""CharRNN shapes, states and settings."""

import pytest
import torch

from abcrnn.errors import ConfigError
from abcrnn.model import CharRNN, ModelConfig


def make_model(**changes) -> CharRNN:
    torch.manual_seed(0)
    settings = dict(vocab_size=11, embedding_dim=4, hidden_size=6) | changes
    return CharRNN(ModelConfig(**settings))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_state_shapes(num_layers):
    model = make_model(num_layers=num_layers)
    h, c = model.initial_state(3, "cpu")
    assert h.shape == (num_layers, 3, 6)
    assert c.shape == (num_layers, 3, 6)
    assert not h.any()
    assert not c.any()


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_gru_and_rnn_state_is_one_tensor(cell):
    model = make_model(cell=cell, num_layers=2)
    state = model.initial_state(5, "cpu")
    assert isinstance(state, torch.Tensor)
    assert state.shape == (2, 5, 6)
    assert not state.any()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_shapes(cell):
    model = make_model(cell=cell, num_layers=2)
    x = torch.randint(0, 11, (3, 7))
    logits, state = model(x)
    assert logits.shape == (3, 7, 11)
    first = state[0] if cell == "lstm" else state
    assert first.shape == (2, 3, 6)


def test_state_follows_batch_size():
    # The zero state is built for the actual batch, e.g. 1 when generating.
    model = make_model(num_layers=2)
    logits, (h, c) = model(torch.zeros(1, 4, dtype=torch.long))
    assert logits.shape == (1, 4, 11)
    assert h.shape == (2, 1, 6)


def test_carried_state_matches_whole_sequence():
    model = make_model().eval()
    x = torch.randint(0, 11, (2, 10))
    whole, _ = model(x)
    first, state = model(x[:, :4])
    second, _ = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_dropout_acts_between_layers_and_on_output():
    model = make_model(num_layers=2, dropout=0.3)
    assert model.rnn.dropout == 0.3
    assert model.dropout.p == 0.3
    single = make_model(num_layers=1, dropout=0.3)
    assert single.rnn.dropout == 0.0  # PyTorch applies it only between layers
    assert single.dropout.p == 0.3


def test_config_round_trip():
    config = ModelConfig(vocab_size=9, hidden_size=7, num_layers=3, cell="gru")
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vocab_size": 0}, "vocab_size must be a positive integer, got 0"),
        ({"hidden_size": -1}, "hidden_size must be a positive integer"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ({"cell": "transformer"}, "cell must be one of lstm, gru, rnn"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    settings = dict(vocab_size=5) | changes
    with pytest.raises(ConfigError) as error:
        ModelConfig(**settings)
    assert message in str(error.value)
