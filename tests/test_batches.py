"""Random training windows and fixed validation windows."""

import pytest
import torch

from abcrnn.batches import RandomWindows, validation_batches
from abcrnn.errors import CorpusError


def test_window_shapes_and_shift():
    data = torch.arange(50)
    windows = RandomWindows(data, seq_len=8, batch_size=5, seed=0)
    x, y = windows.next_batch()
    assert x.shape == (5, 8)
    assert y.shape == (5, 8)
    assert x.dtype == torch.long
    # data[i] == i, so each row counts up by one and y is x moved one place on.
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)


def test_every_start_position_reachable():
    data = torch.arange(30)
    seq_len = 10
    windows = RandomWindows(data, seq_len, batch_size=64, seed=1)
    starts = torch.cat([windows.next_batch()[0][:, 0] for _ in range(50)])
    assert starts.min().item() == 0
    assert starts.max().item() == len(data) - seq_len - 1
    assert set(starts.tolist()) == set(range(len(data) - seq_len))


def test_shortest_text_gives_one_window():
    # seq_len + 1 characters hold exactly one window, starting at 0.
    windows = RandomWindows(torch.arange(6), seq_len=5, batch_size=3, seed=0)
    x, y = windows.next_batch()
    assert x.tolist() == [[0, 1, 2, 3, 4]] * 3
    assert y.tolist() == [[1, 2, 3, 4, 5]] * 3


def test_same_seed_same_batches():
    data = torch.arange(100)
    first = RandomWindows(data, 7, 4, seed=3)
    second = RandomWindows(data, 7, 4, seed=3)
    other = RandomWindows(data, 7, 4, seed=4)
    a, b, c = first.next_batch()[0], second.next_batch()[0], other.next_batch()[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_state_dict_repeats_batches():
    data = torch.arange(100)
    windows = RandomWindows(data, 7, 4, seed=0)
    windows.next_batch()
    saved = windows.state_dict()
    expected = [windows.next_batch()[0] for _ in range(3)]
    restored = RandomWindows(data, 7, 4, seed=99)
    restored.load_state_dict(saved)
    for batch in expected:
        assert torch.equal(restored.next_batch()[0], batch)


def test_short_corpus_names_lengths_and_fix():
    with pytest.raises(CorpusError) as error:
        RandomWindows(torch.arange(37), seq_len=100, batch_size=64, seed=0)
    message = str(error.value)
    assert "has 37 characters" in message
    assert "--seq-len 100 needs 101" in message
    assert "at most 36" in message


def test_validation_windows_contiguous_and_fixed():
    data = torch.arange(23)
    batches = list(validation_batches(data, seq_len=5, batch_size=2, max_batches=10))
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    # (23 - 1) // 5 = 4 windows starting at 0, 5, 10, 15; batches of 2.
    assert [x.shape[0] for x, _ in batches] == [2, 2]
    assert xs[:, 0].tolist() == [0, 5, 10, 15]
    assert torch.equal(ys, xs + 1)
    again = list(validation_batches(data, seq_len=5, batch_size=2, max_batches=10))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_validation_takes_evenly_spaced_windows():
    data = torch.arange(101)
    batches = list(validation_batches(data, seq_len=10, batch_size=2, max_batches=1))
    # 10 windows and a limit of 2: the first and the last are kept.
    assert len(batches) == 1
    assert batches[0][0][:, 0].tolist() == [0, 90]


def test_validation_shorter_than_window():
    batches = list(validation_batches(torch.arange(4), 10, 2, 5))
    assert len(batches) == 1
    x, y = batches[0]
    assert x.tolist() == [[0, 1, 2]]
    assert y.tolist() == [[1, 2, 3]]
    assert list(validation_batches(torch.arange(1), 10, 2, 5)) == []
