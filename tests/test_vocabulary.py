"""Tests for abcrnn.vocabulary.Vocabulary."""

import json

import pytest

from abcrnn.errors import VocabularyError
from abcrnn.vocabulary import Vocabulary

# A corpus with no space character: its vocabulary has 28 symbols.
NO_SPACE_CORPUS = "X:1\nT:Nospace\nM:2/4\nL:1/8\nK:C\nCDEF|GABc|cBAG|FEDC|]\n"
NO_SPACE_CHARS = tuple("\n/1248:ABCDEFGKLMNTX]aceops|")

TUNE = "X:1\nT:Split One\nM:4/4\nL:1/8\nK:G\nGABc d2B2|c2A2 G4|]\n\n"


def test_from_text_sorted_unique():
    vocabulary = Vocabulary.from_text("cabbage")
    assert vocabulary.chars == ("a", "b", "c", "e", "g")
    assert len(vocabulary) == 5


def test_ids_follow_code_point_order():
    vocabulary = Vocabulary.from_text(TUNE)
    assert vocabulary.encode("\n ") == [0, 1]  # newline sorts first, then space
    assert vocabulary.chars[0] == "\n"


def test_encode_decode_round_trip():
    vocabulary = Vocabulary.from_text(TUNE)
    ids = vocabulary.encode(TUNE)
    assert len(ids) == len(TUNE)
    assert vocabulary.decode(ids) == TUNE


def test_encode_exact_ids():
    vocabulary = Vocabulary.from_text("X:1\nK:G\n")
    # sorted: '\n' '1' ':' 'G' 'K' 'X'
    assert vocabulary.encode("X:1\n") == [5, 2, 1, 0]


def test_decode_accepts_any_integer_iterable():
    vocabulary = Vocabulary.from_text("abc")
    assert vocabulary.decode(iter([2, 1, 0])) == "cba"
    assert vocabulary.decode(()) == ""


def test_vocabulary_without_space():
    vocabulary = Vocabulary.from_text(NO_SPACE_CORPUS)
    assert vocabulary.chars == tuple(sorted(NO_SPACE_CHARS))
    assert len(vocabulary) == 28
    assert " " not in vocabulary


def test_unknown_characters_sorted():
    vocabulary = Vocabulary.from_text(NO_SPACE_CORPUS)
    assert vocabulary.unknown("X:1\nT:Caf\u00e9 Reel\n") == [" ", "R", "f", "l", "é"]
    assert vocabulary.unknown("X:1\n") == []


def test_encode_unknown_lists_characters():
    vocabulary = Vocabulary.from_text(NO_SPACE_CORPUS)
    with pytest.raises(VocabularyError) as error:
        vocabulary.encode("X:1\nT:Caf\u00e9 Reel\n")
    assert str(error.value) == (
        "text contains 5 characters that are not in the vocabulary: "
        "' ', 'R', 'f', 'l', 'é'; remove them or train on a corpus that contains them"
    )


def test_encode_one_unknown_character():
    vocabulary = Vocabulary.from_text("ab")
    with pytest.raises(VocabularyError, match="1 character that is not in the"):
        vocabulary.encode("abc")


def test_encode_error_is_value_error():
    vocabulary = Vocabulary.from_text("ab")
    with pytest.raises(ValueError):
        vocabulary.encode("\r")


@pytest.mark.parametrize("bad_id", [-1, 3, 100])
def test_decode_id_out_of_range(bad_id):
    vocabulary = Vocabulary.from_text("abc")
    with pytest.raises(VocabularyError, match=f"id {bad_id} is outside"):
        vocabulary.decode([0, bad_id])


def test_dict_round_trip_through_json():
    vocabulary = Vocabulary.from_text(TUNE)
    data = json.loads(json.dumps(vocabulary.to_dict()))
    assert Vocabulary.from_dict(data) == vocabulary
    assert data == {"chars": list(vocabulary.chars)}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"chars": "abc"},  # a string, not a list
        {"chars": ["b", "a"]},  # not sorted
        {"chars": ["a", "a"]},  # repeated
        {"chars": ["ab"]},  # not one character
        {"chars": []},
    ],
)
def test_from_dict_rejects_invalid(data):
    with pytest.raises(VocabularyError):
        Vocabulary.from_dict(data)


def test_from_text_empty():
    with pytest.raises(VocabularyError, match="empty text"):
        Vocabulary.from_text("")


def test_equal_vocabularies_compare_equal():
    assert Vocabulary.from_text("abc") == Vocabulary(("a", "b", "c"))
    assert Vocabulary.from_text("abc") != Vocabulary.from_text("abd")
