"""Batched generation: seeds, priming, stop rules and the sampling filters."""

import pytest
import torch

from abcrnn import sampling
from abcrnn.errors import ConfigError, VocabularyError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.sampling import SampleConfig, default_prime, generate_tunes
from abcrnn.vocabulary import Vocabulary

ABC_VOCAB = Vocabulary.from_text("X:1\nT:ABCDEFGabcdefg|2/ ]K")
NO_NEWLINE_VOCAB = Vocabulary.from_text("X:1ABCabc|")


def tiny_model(vocab: Vocabulary, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=len(vocab), embedding_dim=6, hidden_size=12)
    return CharRNN(config).eval()


class FixedOdds(torch.nn.Module):
    """Predict the same next-character probabilities at every position."""

    def __init__(self, probs: list[float]):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(probs).log())

    def initial_state(self, batch_size, device):
        return torch.zeros(1, batch_size, 1, device=device)

    def forward(self, x, state=None):
        return self.logits.expand(x.size(0), x.size(1), -1), state


class Scripted(torch.nn.Module):
    """Emit one fixed text per batch row, whatever the input; the state counts."""

    def __init__(self, vocab: Vocabulary, scripts: list[str]):
        super().__init__()
        width = max(map(len, scripts))
        table = torch.full((len(scripts), width, len(vocab)), -10.0)
        for row, script in enumerate(scripts):
            for position, char_id in enumerate(vocab.encode(script)):
                table[row, position, char_id] = 10.0
        self.register_buffer("table", table)

    def initial_state(self, batch_size, device):
        return torch.zeros(batch_size, dtype=torch.long, device=device)

    def forward(self, x, state):
        rows = torch.arange(x.size(0))
        position = state.clamp(max=self.table.size(1) - 1)
        logits = self.table[rows, position]  # (B, V)
        return logits[:, None].expand(-1, x.size(1), -1), state + 1


def frequencies(vocab, model, count=4000, **settings):
    config = SampleConfig(num_tunes=count, prime="A", max_length=1, **settings)
    tunes = generate_tunes(model, vocab, config).tunes
    return [sum(tune[1] == char for tune in tunes) / count for char in vocab.chars]


ODDS_VOCAB = Vocabulary(("A", "B", "C"))
ODDS = [0.5, 0.3, 0.2]


def test_sampler_matches_known_odds():
    observed = frequencies(ODDS_VOCAB, FixedOdds(ODDS))
    for seen, expected in zip(observed, ODDS, strict=True):
        assert seen == pytest.approx(expected, abs=0.03)


def test_temperature_reshapes_odds():
    # Temperature 2 samples from p ** (1 / 2), renormalised.
    observed = frequencies(ODDS_VOCAB, FixedOdds(ODDS), temperature=2.0)
    roots = [p**0.5 for p in ODDS]
    for seen, root in zip(observed, roots, strict=True):
        assert seen == pytest.approx(root / sum(roots), abs=0.03)


def test_top_k_keeps_the_k_most_likely():
    observed = frequencies(ODDS_VOCAB, FixedOdds(ODDS), top_k=2)
    assert observed[0] == pytest.approx(0.625, abs=0.03)
    assert observed[1] == pytest.approx(0.375, abs=0.03)
    assert observed[2] == 0


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (0.6, [0.625, 0.375, 0.0]),
        (0.5, [1.0, 0.0, 0.0]),
        (0.81, [0.5, 0.3, 0.2]),
        (5e-324, [1.0, 0.0, 0.0]),  # 0 in float32: still keeps the likeliest id
    ],
)
def test_top_p_keeps_the_nucleus(top_p, expected):
    observed = frequencies(ODDS_VOCAB, FixedOdds(ODDS), top_p=top_p)
    for seen, probability in zip(observed, expected, strict=True):
        assert seen == pytest.approx(probability, abs=0.03)


def greedy_by_hand(model, vocab, prime, length):
    ids = torch.tensor([vocab.encode(prime)])
    logits, state = model(ids)
    chosen = []
    for _ in range(length):
        next_id = logits[0, -1].argmax().item()
        chosen.append(next_id)
        logits, state = model(torch.tensor([[next_id]]), state)
    return prime + vocab.decode(chosen)


def test_temperature_zero_is_argmax():
    model = tiny_model(NO_NEWLINE_VOCAB)
    with torch.no_grad():
        expected = greedy_by_hand(model, NO_NEWLINE_VOCAB, "X:1", 40)
    config = SampleConfig(num_tunes=2, prime="X:1", temperature=0, max_length=40)
    result = generate_tunes(model, NO_NEWLINE_VOCAB, config)
    assert result.tunes == [expected, expected]
    assert result.unfinished == 2


def test_top_k_one_is_greedy():
    model = tiny_model(NO_NEWLINE_VOCAB)
    greedy = SampleConfig(prime="X:1", temperature=0, max_length=40)
    top_one = SampleConfig(prime="X:1", top_k=1, max_length=40, seed=5)
    assert (
        generate_tunes(model, NO_NEWLINE_VOCAB, greedy).tunes
        == generate_tunes(model, NO_NEWLINE_VOCAB, top_one).tunes
    )


def test_same_seed_same_tunes_different_seed_differs():
    model = tiny_model(ABC_VOCAB)
    config = SampleConfig(num_tunes=3, max_length=60, seed=123)
    first = generate_tunes(model, ABC_VOCAB, config)
    second = generate_tunes(model, ABC_VOCAB, config)
    other = generate_tunes(model, ABC_VOCAB, SampleConfig(3, max_length=60, seed=124))
    assert first == second
    assert first.tunes != other.tunes


def test_multi_character_prime_starts_every_tune():
    model = tiny_model(ABC_VOCAB)
    prime = "X:1\nT:Ab\nK:G\n"
    result = generate_tunes(model, ABC_VOCAB, SampleConfig(4, prime, max_length=30))
    assert len(result.tunes) == 4
    for tune in result.tunes:
        assert tune.startswith(prime.rstrip())
        assert len(tune) <= len(prime) + 30


def test_max_length_counts_new_characters_only():
    # A prime longer than max_length is fine: max_length limits the new text.
    model = tiny_model(NO_NEWLINE_VOCAB)
    config = SampleConfig(prime="X:1ABCabc", max_length=3)
    tune = generate_tunes(model, NO_NEWLINE_VOCAB, config).tunes[0]
    assert tune.startswith("X:1ABCabc")
    assert len(tune) == 12


def test_tune_ends_at_blank_line():
    scripts = ["ab\n\ngggg", "c\n\nfffff", "abcabcabc"]
    model = Scripted(ABC_VOCAB, scripts)
    config = SampleConfig(num_tunes=3, prime="X:1\n", temperature=0, max_length=9)
    result = generate_tunes(model, ABC_VOCAB, config)
    assert result.tunes == ["X:1\nab", "X:1\nc", "X:1\nabcabcabc"]
    assert result.unfinished == 1


def test_blank_line_right_after_prime_ends_tune():
    # The prime ends with a newline, so one more newline makes the blank line.
    model = Scripted(ABC_VOCAB, ["\nabc"])
    config = SampleConfig(prime="X:1\n", temperature=0, max_length=4)
    result = generate_tunes(model, ABC_VOCAB, config)
    assert result.tunes == ["X:1"]
    assert result.unfinished == 0


def test_early_stop_check_keeps_results():
    model = Scripted(ABC_VOCAB, ["a\n\n" + "b" * 200])
    short = SampleConfig(prime="X:1\n", temperature=0, max_length=5)
    long = SampleConfig(prime="X:1\n", temperature=0, max_length=200)
    assert generate_tunes(model, ABC_VOCAB, short).tunes == ["X:1\na"]
    assert generate_tunes(model, ABC_VOCAB, long).tunes == ["X:1\na"]


def test_huge_max_length_costs_no_memory():
    # Room for characters grows with the tunes, so 10**12 allocates nothing large.
    model = Scripted(ABC_VOCAB, ["ab\n\ngggg", "c\n\nfffff"])
    config = SampleConfig(num_tunes=2, prime="X:1\n", temperature=0, max_length=10**12)
    result = generate_tunes(model, ABC_VOCAB, config)
    assert result.tunes == ["X:1\nab", "X:1\nc"]
    assert result.unfinished == 0


def test_slots_restart_with_long_tunes(monkeypatch):
    # Two slots for four tunes, and tunes longer than the sampler's first room.
    monkeypatch.setattr(sampling, "FIRST_CAPACITY", 4)
    scripts = ["abcabcabcabc\n\n", "fffffffff\n\n"]
    model = Scripted(ABC_VOCAB, scripts)
    config = SampleConfig(
        num_tunes=4, at_once=2, prime="X:1\n", temperature=0, max_length=100
    )
    result = generate_tunes(model, ABC_VOCAB, config)
    expected = ["X:1\nabcabcabcabc", "X:1\nfffffffff"] * 2
    assert result.tunes == expected
    assert result.unfinished == 0


def test_prime_with_unknown_characters():
    # The vocabulary of a corpus with no space, "f", "l", "R" or "é".
    vocab = Vocabulary.from_text("\n/1248:ABCDEFGKLMNTX]aceops|")
    assert len(vocab) == 28
    config = SampleConfig(prime="X:1\nT:Café Reel\n")
    with pytest.raises(VocabularyError) as error:
        generate_tunes(tiny_model(vocab), vocab, config)
    assert "5 character(s)" in str(error.value)
    assert "' ', 'R', 'f', 'l', 'é'" in str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("X:1\nAB", "X:1\n"), ("X:2\nAB", "X:"), ("XAB\n", "X"), ("AB\n", "\n")],
)
def test_default_prime_drawn_from_vocabulary(text, expected):
    assert default_prime(Vocabulary.from_text(text)) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": -0.5}, "temperature must be >= 0 (0 = greedy), got -0.5"),
        ({"top_k": -1}, "top_k must be >= 0 (0 = off), got -1"),
        ({"top_p": 0.0}, "top_p must be in (0, 1] (1 = off), got 0.0"),
        ({"top_p": 1.5}, "top_p must be in (0, 1] (1 = off), got 1.5"),
        ({"max_length": 0}, "max_length must be >= 1 new character, got 0"),
        ({"num_tunes": 0}, "num_tunes must be >= 1, got 0"),
        ({"prime": ""}, "prime must not be empty"),
        ({"at_once": 1.5}, "at_once must be an integer, got 1.5"),
        ({"num_tunes": True}, "num_tunes must be an integer, got True"),
        ({"max_length": 2.0}, "max_length must be an integer, got 2.0"),
    ],
)
def test_sample_config_rejects_bad_values(settings, message):
    with pytest.raises(ConfigError) as error:
        SampleConfig(**settings)
    assert message in str(error.value)
