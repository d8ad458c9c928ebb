"""The API's work, free of HTTP: compose tunes, check them and render files.

Each function is blocking (model inference, converters), so the app runs them in a
worker thread.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from abcrnn.errors import ConfigError, VocabularyError
from abcrnn.web.outputs import OutputStore
from abcrnn.web.runs import LoadedRun
from abcrnn.web.schemas import (
    MODE_SUFFIXES,
    CheckReport,
    Diagnostic,
    GenerateRequest,
    GenerateResponse,
    HeaderFields,
    RenderResponse,
    SamplingSettings,
    Tune,
    TuneFiles,
)

logger = logging.getLogger(__name__)


def build_prime(header: HeaderFields) -> str:
    """Write the header fields as priming ABC, e.g. "X:1\\nT:Tune\\nM:6/8\\nK:G\\n".

    Fields come in the usual order X, T, M, L, K. Empty fields are left out.
    """
    key = f"{header.key}{MODE_SUFFIXES[header.mode]}" if header.key else ""
    fields = [
        ("X", "1"),
        ("T", header.title.strip()),
        ("M", header.meter),
        ("L", header.unit_length),
        ("K", key),
    ]
    return "".join(f"{name}:{value}\n" for name, value in fields if value)


def describe_chars(chars: list[str]) -> str:
    """Name characters for a message: printable ones quoted, others by code point."""
    names = {" ": "space", "\n": "newline", "\t": "tab", "\r": "carriage return"}
    parts = []
    for char in chars:
        if char in names:
            parts.append(names[char])
        elif char.isprintable():
            parts.append(f"'{char}'")
        else:
            parts.append(f"U+{ord(char):04X}")
    return ", ".join(parts)


def check_prime(prime: str, loaded: LoadedRun) -> None:
    """Raise VocabularyError naming the characters of `prime` the model never saw."""
    unknown = loaded.vocab.unknown(prime)
    if unknown:
        raise VocabularyError(
            f"The priming text contains characters that run '{loaded.entry.name}' "
            f"never saw in training: {describe_chars(unknown)}. "
            "Remove or replace them in the header fields or the priming ABC."
        )


def resolve_sampling(settings: SamplingSettings, vocab_size: int) -> SamplingSettings:
    """Check top_k against the vocabulary and fill in a seed when none was given."""
    if settings.top_k > vocab_size:
        raise ConfigError(
            f"top_k is {settings.top_k} but this run's vocabulary has only "
            f"{vocab_size} characters: choose 0 (no limit) to {vocab_size}"
        )
    if settings.seed is None:
        return settings.model_copy(update={"seed": secrets.randbelow(2**32)})
    return settings


def generate(
    request: GenerateRequest, loaded: LoadedRun, store: OutputStore
) -> GenerateResponse:
    """Compose `request.num_tunes` tunes, then check and render each of them."""
    from abcrnn.sampling import SampleConfig, generate_tunes

    prime = request.prime if request.prime is not None else build_prime(request.header)
    check_prime(prime, loaded)
    sampling = resolve_sampling(request.sampling, len(loaded.vocab))
    config = SampleConfig(
        num_tunes=request.num_tunes,
        prime=prime,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        max_length=sampling.max_length,
        seed=sampling.seed,
    )
    result = generate_tunes(loaded.model, loaded.vocab, config, "cpu")

    folder_id, folder = store.new_folder()
    rendered = render_files(result.tunes, folder, folder_id, store)
    tunes = [
        Tune(index=index, abc=text, check=check_or_report(text), files=files)
        for index, (text, files) in enumerate(rendered, start=1)
    ]
    return GenerateResponse(
        id=folder_id,
        run=loaded.entry.name,
        step=loaded.step,
        prime=prime,
        num_tunes=request.num_tunes,
        sampling=sampling,
        unfinished=result.unfinished,
        tunes=tunes,
    )


def check(abc: str) -> CheckReport:
    """Run the checker on one tune and convert its verdict for the API."""
    from abcrnn.abc.checker import check_tune

    result = check_tune(abc)
    return CheckReport(
        valid=result.valid,
        title=result.title or None,
        diagnostics=[Diagnostic(**item.to_dict()) for item in result.diagnostics],
    )


def check_or_report(abc: str) -> CheckReport:
    """Check one tune; if the checker itself fails, say so in the verdict.

    A composed batch is still worth showing when the checker breaks on one tune,
    so the failure becomes that tune's diagnostic (and a logged traceback).
    """
    try:
        return check(abc)
    except Exception as error:
        logger.exception("the checker failed on a generated tune")
        message = (
            f"the checker failed on this tune ({type(error).__name__}: {error}); "
            "its verdict is unknown"
        )
        failure = Diagnostic(
            severity="error", code="checker-failed", message=message, line=1, column=1
        )
        return CheckReport(valid=False, title=None, diagnostics=[failure])


def render(abc: str, store: OutputStore) -> RenderResponse:
    """Write one tune's ABC, MIDI and WAV files into a new output folder."""
    folder_id, folder = store.new_folder()
    ((_, files),) = render_files([abc], folder, folder_id, store)
    return RenderResponse(id=folder_id, files=files)


def render_files(
    texts: list[str], folder: Path, folder_id: str, store: OutputStore
) -> list[tuple[str, TuneFiles]]:
    """Render `texts` into `folder`; return each tune's ABC as written, and its files.

    The renderer normalises line endings and ends the text with one newline, so the
    ABC returned here is byte for byte the ABC download.
    """
    from abcrnn.render import render_tunes

    report = render_tunes(texts, folder, stem="tune")
    return [
        (
            item.abc,
            TuneFiles(
                abc=store.url(folder_id, item.abc_path),
                mid=store.url(folder_id, item.midi_path),
                wav=store.url(folder_id, item.wav_path),
                error=item.reason or None,
            ),
        )
        for item in report.tunes
    ]
