"""Coverage-guided fuzzing of the corpus reader and splitter with atheris.

Each input is written to a file and read as a corpus source, with the options taken
from its first byte. An exception other than CorpusError, or a broken promise about
the tunes, stops the run with a non-zero exit status and a crash file. Example:

    python tests/atheris_corpus.py -runs=3000 -max_total_time=10

tests/test_fuzz_corpus.py runs it this way when atheris is installed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

from abcrnn.abc.checker import check_text
from abcrnn.abc.tunes import split_tunes
from abcrnn.corpus import CorpusOptions, join_tunes, load_corpus
from abcrnn.errors import CorpusError

FOLDER = Path(tempfile.mkdtemp(prefix="abcrnn-atheris-"))


def check_tunes(tunes: list[str]) -> None:
    for tune in tunes:
        if not tune.startswith("X:") or "\r" in tune or tune.endswith("\n"):
            raise AssertionError(f"malformed tune {tune[:40]!r}")


def fuzz_one(data: bytes) -> None:
    flags = data[0] if data else 0
    options = CorpusOptions(*(bool(flags >> bit & 1) for bit in range(5)))
    path = FOLDER / "input.abc"
    path.write_bytes(data[1:])

    try:
        corpus = load_corpus([str(path)], options)
    except CorpusError:
        return
    check_tunes(corpus.tunes)
    if split_tunes(join_tunes(corpus.tunes)).tunes != corpus.tunes:
        raise AssertionError("splitting the joined tunes changed them")
    check_text(join_tunes(corpus.tunes))


def main() -> None:
    # instrument_imports() missed the editable install's modules (45 edges against
    # 362 here with atheris 3.0), so every loaded module is instrumented instead.
    atheris.instrument_all()
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
