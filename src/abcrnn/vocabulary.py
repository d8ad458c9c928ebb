"""Vocabulary: the characters a model reads and writes, and their integer ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from abcrnn.errors import VocabularyError


@dataclass(frozen=True)
class Vocabulary:
    """A sorted set of characters. A character's id is its index in `chars`.

    Sorting by code point makes the ids depend only on which characters occur, so
    the same corpus always gives the same vocabulary.
    """

    chars: tuple[str, ...]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chars = tuple(self.chars)
        for char in chars:
            if not isinstance(char, str) or len(char) != 1:
                raise VocabularyError(
                    f"vocabulary entry {char!r} is not a single character"
                )
        if list(chars) != sorted(set(chars)):
            raise VocabularyError(
                "vocabulary characters must be unique and sorted by code point; "
                "build the vocabulary with Vocabulary.from_text"
            )
        if not chars:
            raise VocabularyError("a vocabulary needs at least one character")
        object.__setattr__(self, "chars", chars)
        object.__setattr__(self, "_ids", {char: i for i, char in enumerate(chars)})

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """Build the vocabulary of every distinct character in `text`."""
        if not text:
            raise VocabularyError(
                "cannot build a vocabulary from empty text; load a corpus first"
            )
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: object) -> bool:
        return char in self._ids

    def unknown(self, text: str) -> list[str]:
        """Return the characters of `text` that are not in the vocabulary, sorted."""
        return sorted(set(text) - self._ids.keys())

    def encode(self, text: str) -> list[int]:
        """Return the id of each character of `text`.

        Raises VocabularyError listing every unknown character when there is one.
        """
        missing = self.unknown(text)
        if missing:
            listed = ", ".join(repr(char) for char in missing)
            count = (
                "1 character that is"
                if len(missing) == 1
                else f"{len(missing)} characters that are"
            )
            raise VocabularyError(
                f"text contains {count} not in the vocabulary: {listed}; "
                "remove them or train on a corpus that contains them"
            )
        return [self._ids[char] for char in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text for a sequence of ids (ints or 0-d integer tensors)."""
        chars = []
        for value in ids:
            index = int(value)
            if not 0 <= index < len(self.chars):
                raise VocabularyError(
                    f"id {index} is outside the vocabulary, whose ids run from 0 "
                    f"to {len(self.chars) - 1}; decode with the vocabulary the "
                    "model was trained with"
                )
            chars.append(self.chars[index])
        return "".join(chars)

    def to_dict(self) -> dict[str, list[str]]:
        """Return a JSON-ready dict from which from_dict rebuilds this vocabulary."""
        return {"chars": list(self.chars)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Vocabulary:
        """Rebuild a vocabulary saved by to_dict; raise VocabularyError if invalid."""
        chars = data.get("chars") if isinstance(data, Mapping) else None
        if not isinstance(chars, list | tuple):
            raise VocabularyError(
                f"saved vocabulary {data!r:.80} has no 'chars' list; "
                "save it with Vocabulary.to_dict"
            )
        return cls(tuple(chars))
