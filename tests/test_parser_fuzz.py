"""Property tests: the parser and checker never raise and stay fast on any text."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from abcrnn.abc.checker import check_text, check_tune
from abcrnn.abc.parser import parse_tune

# Real tunes to mutate: a lab-style reel with ! line ends, chord symbols and
# triplets, and a tune with endings, a continuation, grace notes, ties, broken
# rhythm, inline fields and two voices.
REEL = """X:1
T:Alexander's
Z: id:dc-hornpipe-1
M:C|
L:1/8
K:D Major
(3ABc|dAFA DFAd|fdcd FAdf|gfge fefd|(3efe (3dcB A2 (3ABc|!
dAFA DFAd|fdcd FAdf|gfge fefd|(3efe dc d2:|!
"G"AG|FAdA FAdA|GBdB GBdB|Acec Acec|dfaf gecA|!"""

MIXED = """X:2
T:Mixed
M:6/8
L:1/8
K:Ador
|:{g}A>BA "Am"e2d|[1 c2B- B2A:|[2 ^c2=B [CE]3|]\\
[K:G][M:2/4] !trill!G3/2A/ (3Bcd|z4|Z2|
V:2
A,3- A,3|~E>FG [Ac]2 .e|]"""

SEEDS = [REEL, MIXED]

# Characters that mean something in ABC, plus some that do not.
ABC_ALPHABET = "ABCDEFGabcdefgzxZXyHTuv^_=,'/0123456789|:[]{}()<>-.~!+\"%\\&$@ \nKMLVX"

FAST = settings(max_examples=150, deadline=300, database=None)


def assert_well_formed(text: str) -> None:
    """Check that parsing and checking `text` returns sane results."""
    parsed = parse_tune(text)
    result = check_tune(text)
    lines = text.count("\n") + text.count("\r") + 2
    assert result.valid == (not result.errors)
    for item in [*parsed.diagnostics, *result.diagnostics]:
        assert item.severity in ("error", "warning")
        assert 1 <= item.line <= lines
        assert item.column >= 1
    for event in parsed.events:
        assert event.duration_ticks >= 0


@FAST
@given(st.text(alphabet=ABC_ALPHABET, max_size=300))
def test_random_abc_characters(text):
    assert_well_formed(text)


@FAST
@given(st.text(max_size=200))
def test_random_unicode_text(text):
    assert_well_formed(text)


@st.composite
def mutated_tunes(draw) -> str:
    """Apply a few random insertions, deletions and replacements to a real tune."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(ABC_ALPHABET))
        if action == "insert":
            text = text[:position] + char + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + char + text[position + 1 :]
    return text


@FAST
@given(mutated_tunes())
def test_mutated_real_tunes(text):
    assert_well_formed(text)


@settings(max_examples=40, deadline=500, database=None)
@given(st.lists(mutated_tunes(), min_size=1, max_size=4))
def test_check_text_on_mutated_files(tunes):
    results = check_text("\n\n".join(tunes))
    assert all(result.index == number for number, result in enumerate(results, 1))


def test_seeds_are_valid():
    assert [check_tune(seed).valid for seed in SEEDS] == [True, True]


def test_pathological_inputs_finish_quickly():
    header = "X:1\nM:4/4\nL:1/8\nK:G\n"
    bodies = [
        "(" * 20_000,
        "[" * 20_000,
        "{" * 20_000,
        "!" * 20_000,
        '"' * 20_000,
        "(3" * 10_000,
        "A>" * 10_000,
        "A-" * 10_000,
        "|" * 20_000,
        "A" * 20_000,
        ("A/" * 50 + "|\n") * 400,
    ]
    for body in bodies:
        start = time.perf_counter()
        result = check_tune(header + body)
        assert time.perf_counter() - start < 2.0, body[:10]
        assert len(result.diagnostics) <= 201
