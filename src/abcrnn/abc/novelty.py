"""How much of a tune is copied from other tunes, measured in whole bars.

A tune's bars are the stretches of music between bar lines and ending marks,
written without spaces, chord symbols, decorations, slurs or comments, so that
`| d2 "G"(dB) ~A2 |` and `|d2dBA2|` are the same bar. Voices are not separated.
The longest shared passage of two tunes is their longest run of consecutive
equal bars.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from abcrnn.abc.lexer import TOKEN_RE
from abcrnn.abc.tunes import is_music_line, normalise_newlines

# Token kinds that end a bar, and those left out of a bar's text.
_BAR_ENDS = frozenset({"bar", "ending"})
_IGNORED = frozenset(
    {"space", "quote", "deco", "plusdeco", "shorthand", "slur", "slurend"}
    | {"continuation", "bang", "spacer"}
)

# A tune is a near-copy of the training tunes when it shares at least this many
# consecutive bars with one of them, or this share of its own bars.
NEAR_COPY_BARS = 8
NEAR_COPY_SHARE = 0.8


def tune_bars(tune: str) -> list[str]:
    """Return the bars of a tune's music lines as normalised strings, in order.

    Field lines (inline ones included) and everything after a `%` are left out;
    empty bars are dropped.
    """
    bars: list[str] = []
    current: list[str] = []
    for line in normalise_newlines(tune).split("\n"):
        if not is_music_line(line):
            continue
        for match in TOKEN_RE.finditer(line):
            kind = match.lastgroup
            if kind == "comment":
                break
            if kind in _BAR_ENDS:
                _close_bar(bars, current)
            elif kind != "field" and kind not in _IGNORED:
                current.append(match.group())
    _close_bar(bars, current)
    return bars


def _close_bar(bars: list[str], current: list[str]) -> None:
    if current:
        bars.append("".join(current))
        current.clear()


class BarIndex:
    """An index of where each bar occurs in a list of tunes."""

    def __init__(self, tunes: Sequence[str]) -> None:
        self.places: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for tune_index, tune in enumerate(tunes):
            for position, bar in enumerate(tune_bars(tune)):
                self.places[bar].append((tune_index, position))

    def longest_shared(self, bars: Sequence[str]) -> int:
        """Return the longest run of consecutive `bars` found in one indexed tune.

        The run must appear in the same order and without gaps in that tune.
        """
        longest = 0
        previous: dict[tuple[int, int], int] = {}
        for bar in bars:
            current = {}
            for tune_index, position in self.places.get(bar, ()):
                run = previous.get((tune_index, position - 1), 0) + 1
                current[(tune_index, position)] = run
                longest = max(longest, run)
            previous = current
        return longest


def is_near_copy(shared_bars: int, tune_bar_count: int) -> bool:
    """Return whether a tune whose longest shared passage is `shared_bars` is a copy.

    The rule: at least NEAR_COPY_BARS shared bars, or at least NEAR_COPY_SHARE
    of the tune's own bars (a tune without bars is never a copy).
    """
    if tune_bar_count == 0:
        return False
    return (
        shared_bars >= NEAR_COPY_BARS or shared_bars >= NEAR_COPY_SHARE * tune_bar_count
    )


@dataclass(frozen=True)
class Novelty:
    """Shared passages of some tunes with a reference set, in bars.

    longest: for each tune, its longest passage shared with any reference tune.
    near_copies: how many tunes are near-copies (see is_near_copy).
    """

    longest: list[int]
    near_copies: int

    @property
    def near_copy_share(self) -> float:
        """Return the share of tunes that are near-copies (0 for no tunes)."""
        return self.near_copies / len(self.longest) if self.longest else 0.0

    def to_dict(self) -> dict[str, object]:
        """Return the figures as a JSON-ready dict."""
        ordered = sorted(self.longest)
        median = ordered[len(ordered) // 2] if ordered else 0
        return {
            "longest_shared_bars_mean": _mean(self.longest),
            "longest_shared_bars_median": median,
            "longest_shared_bars_max": max(self.longest, default=0),
            "near_copies": self.near_copies,
            "near_copy_share": round(self.near_copy_share, 4),
            "rule": f"a near-copy shares >= {NEAR_COPY_BARS} consecutive bars, or "
            f">= {NEAR_COPY_SHARE:.0%} of its bars, with one training tune",
        }


def novelty(tunes: Sequence[str], index: BarIndex) -> Novelty:
    """Measure each tune's longest passage shared with the tunes in `index`."""
    longest, near_copies = [], 0
    for tune in tunes:
        bars = tune_bars(tune)
        shared = index.longest_shared(bars)
        longest.append(shared)
        near_copies += is_near_copy(shared, len(bars))
    return Novelty(longest, near_copies)


def _mean(values: Sequence[int]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0
