"""Request and response bodies of the JSON API, with the limits each field accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TUNES = 16
MAX_LENGTH = 5000
MAX_TEXT_CHARS = 100_000
MAX_SEED = 2**32 - 1

# A run name is one folder name inside the runs folder: no separators, no leading dot,
# so neither ".." nor an absolute path can pass.
RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# Output folders are named by uuid4().hex, and files inside them by the renderer.
OUTPUT_ID_PATTERN = r"^[0-9a-f]{32}$"
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(abc|mid|wav)$"

# ABC mode names and the suffix that the K: field takes for each.
MODE_SUFFIXES = {
    "major": "",
    "minor": "m",
    "mixolydian": "mix",
    "dorian": "dor",
    "phrygian": "phr",
    "lydian": "lyd",
    "locrian": "loc",
}
Mode = Literal[
    "major", "minor", "mixolydian", "dorian", "phrygian", "lydian", "locrian"
]


class StrictModel(BaseModel):
    """Reject fields the API does not define, so a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    """A failed request: one plain sentence saying what was wrong and what to do."""

    detail: str


class RunInfo(BaseModel):
    """A trained run found in the runs folder."""

    name: str
    checkpoint: str = Field(description="Checkpoint file, relative to the run folder.")
    modified: float = Field(description="Checkpoint modification time, Unix seconds.")


class RunDetail(RunInfo):
    """A run with its loaded model's vocabulary and training progress."""

    vocab_size: int
    chars: str = Field(description="Every character the model can read or write.")
    step: int | None = Field(description="Training step of the checkpoint.")


class HeaderFields(StrictModel):
    """Tune header fields that start the priming text. Empty fields are left out."""

    title: str = Field("", max_length=200, pattern=r"^[^\r\n]*$")
    meter: str = Field("6/8", pattern=r"^(|\d{1,2}/\d{1,2}|C\|?|none)$")
    unit_length: str = Field("1/8", pattern=r"^(|1/(1|2|4|8|16|32|64))$")
    key: str = Field(
        "G", pattern=r"^(|[A-G][#b]?)$", description="Tonic, e.g. G or Bb."
    )
    mode: Mode = "major"


class SamplingSettings(StrictModel):
    """How to draw characters from the model."""

    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_k: int = Field(
        0, ge=0, description="Sample among the k likeliest characters (0: all)."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_length: int = Field(
        1000,
        ge=1,
        le=MAX_LENGTH,
        description="Max new characters per tune, not counting the prime.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Random seed (empty: the server picks one and returns it).",
    )


class GenerateRequest(StrictModel):
    """Compose tunes with one run's model."""

    run: str = Field(pattern=RUN_NAME_PATTERN)
    num_tunes: int = Field(1, ge=1, le=MAX_TUNES)
    header: HeaderFields = HeaderFields()
    prime: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="Free priming ABC that replaces the header fields when set.",
    )
    sampling: SamplingSettings = SamplingSettings()


class Diagnostic(BaseModel):
    """One fault found by the checker, and where it is in the tune.

    `line` and `column` count from 1, lines from the tune's X: line. `bar` is the
    bar number in its voice, from 1, or None outside the music.
    """

    severity: Literal["error", "warning"]
    code: str = Field(description="Short name of the kind of fault.")
    message: str
    line: int
    column: int
    bar: int | None = None


class CheckReport(BaseModel):
    """The checker's verdict on one tune."""

    valid: bool
    title: str | None = None
    diagnostics: list[Diagnostic]


class TuneFiles(BaseModel):
    """Download addresses of one rendered tune. A file that failed is None."""

    abc: str | None = None
    mid: str | None = None
    wav: str | None = None
    error: str | None = Field(None, description="Why MIDI or WAV is missing.")


class Tune(BaseModel):
    """One composed tune with its verdict and files."""

    index: int = Field(description="Position in the batch, from 1.")
    abc: str
    check: CheckReport
    files: TuneFiles


class GenerateResponse(BaseModel):
    """Tunes composed by one request, with every setting needed to make them again."""

    id: str
    run: str
    step: int | None
    prime: str
    num_tunes: int
    sampling: SamplingSettings
    unfinished: int = Field(
        description="Tunes cut off at max_length before the model ended them."
    )
    tunes: list[Tune]


class TextRequest(StrictModel):
    """One tune in ABC notation."""

    abc: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class RenderResponse(BaseModel):
    """The files rendered from one tune."""

    id: str
    files: TuneFiles
