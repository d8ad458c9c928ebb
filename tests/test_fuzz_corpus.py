"""Property tests: the corpus reader, splitter and checker on arbitrary input.

Each test is bounded by its example count and a per-example deadline, so a hang
fails the test instead of stalling CI. An optional coverage-guided run with atheris
(tests/atheris_corpus.py) covers the same functions when atheris is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abcrnn.abc.checker import check_text
from abcrnn.abc.tunes import is_music_line, split_tunes
from abcrnn.corpus import (
    CorpusOptions,
    join_tunes,
    load_corpus,
    read_abc_file,
    split_corpus,
)
from abcrnn.errors import CorpusError
from abcrnn.vocabulary import Vocabulary

FAST = settings(max_examples=150, deadline=500, database=None)

# Lines that matter to the splitter, normaliser and checker, mixed at random.
LINES = [
    "X:1", "X:", "X:2 % comment", "T:Title", "T:", "M:6/8", "L:1/8", "K:G", "K:",
    "Q:1/4=120", "R:reel", "%%MIDI program 73", "% comment", "W:words", "+:more",
    "V:1", "|:GAB cBA:|", "abc|", '"Am"A2 !trill!B2|', "[K:D] d2|]", "", " ", "\t",
    "\r", "K:A\r", "GABc|\r", "x", "\ufeffX:3", "é|", "|]\\",
]  # fmt: skip

abc_like_text = st.lists(st.sampled_from(LINES), max_size=40).map("\n".join)
any_text = st.one_of(abc_like_text, st.text(max_size=300))
any_bytes = st.one_of(
    abc_like_text.map(lambda text: text.encode("utf-8")),
    st.binary(max_size=300),
    abc_like_text.map(lambda text: text.encode("latin-1", errors="replace")),
)
options = st.builds(
    CorpusOptions,
    normalise=st.booleans(),
    drop_titles=st.booleans(),
    drop_chords=st.booleans(),
    drop_decorations=st.booleans(),
    deduplicate=st.booleans(),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def assert_tune_shape(tune: str) -> None:
    """Check the promises of split_tunes for one tune."""
    assert tune.startswith("X:")
    assert "\r" not in tune
    assert not tune.endswith("\n")
    assert tune.split("\n")[-1].strip() or tune.count("\n") == 0


@FAST
@given(any_text)
def test_split_tunes_shape(text):
    result = split_tunes(text)
    for tune in result.tunes:
        assert_tune_shape(tune)
    assert result.dropped_lines == sum(
        fragment.count("\n") + 1 for fragment in result.fragments
    )
    assert len(result.start_lines) == len(result.tunes)
    assert result.start_lines == sorted(set(result.start_lines))


@FAST
@given(any_text)
def test_split_join_split_is_stable(text):
    # Joining the tunes as training text and splitting again gives the same tunes.
    tunes = split_tunes(text).tunes
    again = split_tunes(join_tunes(tunes)) if tunes else split_tunes("")
    assert again.tunes == tunes
    assert again.dropped_lines == 0


@FAST
@given(any_bytes)
def test_read_abc_file_never_raises(folder, data):
    path = folder / "read.abc"
    path.write_bytes(data)
    warnings: list[str] = []
    text = read_abc_file(path, warnings)
    try:
        expected = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        expected = data.decode("latin-1")
        assert len(warnings) == 1
        assert warnings[0].startswith(f"{path}: invalid UTF-8 at byte offset ")
    else:
        assert warnings == []
    assert text == expected


@settings(max_examples=100, deadline=1000, database=None)
@given(any_bytes, options)
def test_load_corpus_gives_tunes_or_corpus_error(folder, data, corpus_options):
    path = folder / "load.abc"
    path.write_bytes(data)
    try:
        corpus = load_corpus([str(path)], corpus_options)
    except CorpusError as error:
        assert "no tunes found" in str(error)
        return
    assert corpus.tunes
    assert corpus.report.tunes_kept == len(corpus.tunes)
    for tune in corpus.tunes:
        assert_tune_shape(tune)
        assert any(is_music_line(line) for line in tune.split("\n"))
    if corpus_options.deduplicate:
        bodies = [tune.partition("\n")[2] for tune in corpus.tunes]
        assert len(set(bodies)) == len(bodies)
    text = join_tunes(corpus.tunes)
    vocabulary = Vocabulary.from_text(text)
    assert vocabulary.decode(vocabulary.encode(text)) == text


@FAST
@given(
    st.lists(st.text(max_size=5), max_size=30),
    st.floats(min_value=0.001, max_value=0.999),
    st.integers(min_value=0, max_value=2**32),
)
def test_split_corpus_partitions(tunes, fraction, seed):
    if len(tunes) < 2:
        with pytest.raises(CorpusError, match="needs at least 2"):
            split_corpus(tunes, fraction, seed)
        return
    train, valid = split_corpus(tunes, fraction, seed)
    assert sorted(train + valid) == sorted(tunes)
    assert len(valid) == min(max(1, round(len(tunes) * fraction)), len(tunes) - 1)
    assert train
    assert split_corpus(tunes, fraction, seed) == (train, valid)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 2.0, float("nan")])
def test_split_corpus_rejects_fraction(fraction):
    with pytest.raises(ValueError, match="out of range"):
        split_corpus(["X:1", "X:2"], fraction)


@settings(max_examples=60, deadline=1000, database=None)
@given(any_bytes)
def test_check_text_on_file_bytes(data):
    text = data.decode("utf-8", errors="replace")
    results = check_text(text)
    assert len(results) == len(split_tunes(text).tunes)
    for result in results:
        assert result.valid == (not result.errors)


def test_large_inputs_finish_quickly(folder):
    # Each input is read, split, normalised and deduplicated within a few seconds.
    inputs = {
        "many tunes": "X:1\nT:Same\nK:G\nGABc|\n\n" * 20_000,
        "many X lines": "X:1\n" * 100_000,
        "one long line": "X:1\nK:G\n" + "GABc|" * 200_000,
        "no tunes": "abc|\n" * 100_000,
    }
    for name, text in inputs.items():
        path = folder / "large.abc"
        path.write_text(text)
        start = time.perf_counter()
        try:
            load_corpus([str(path)])
        except CorpusError:
            assert name in ("many X lines", "no tunes")
        assert time.perf_counter() - start < 10.0, name


@pytest.mark.slow
def test_atheris_run(tmp_path):
    # About 10 s: instrumenting every loaded module takes most of it.
    pytest.importorskip("atheris")
    harness = Path(__file__).with_name("atheris_corpus.py")
    command = [sys.executable, str(harness), "-runs=2000", "-max_total_time=5"]
    command += [f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")]
    (tmp_path / "corpus").mkdir()
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Done" in completed.stderr
