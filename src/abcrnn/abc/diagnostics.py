"""Faults found in ABC text, with their position."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One fault: severity ("error" or "warning"), a short code and a message.

    `line` and `column` count from 1. The parser numbers lines from the tune's
    `X:` line; `shifted` moves them to file lines. `bar` is the bar number in
    its voice (the first bar, pickup or not, is 1), or None outside the music.
    """

    severity: str
    code: str
    message: str
    line: int
    column: int
    bar: int | None = None

    def shifted(self, lines: int) -> Diagnostic:
        """Return a copy whose line number is `lines` higher."""
        return replace(self, line=self.line + lines)

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)
