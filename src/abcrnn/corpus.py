"""Read ABC sources into training tunes: split, normalise, deduplicate and divide.

A source is a `.abc` file, a folder searched recursively for `*.abc` files, or the
name of an ABC collection shipped inside the music21 package (see COLLECTIONS).
"""

from __future__ import annotations

import importlib.util
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from abcrnn.abc.normalise import NormaliseCounts, normalise_tune
from abcrnn.abc.tunes import header_fields, is_music_line, split_tunes
from abcrnn.errors import ConfigError, CorpusError

# Collection name -> folder inside music21/corpus.
COLLECTIONS: dict[str, str] = {
    "oneills1850": "oneills1850",
    "ryansMammoth": "ryansMammoth",
    "airdsAirs": "airdsAirs",
    "essenFolksong": "essenFolksong",
}
DEFAULT_SOURCE = "oneills1850"

# Larger files are rejected before reading. The largest file in the four music21
# collections is 248 KB (music21 10.5), so a bigger one is most likely not ABC text.
MAX_FILE_BYTES = 64 * 1024 * 1024

# Collections whose X: numbers are catalogue numbers: O'Neill's numbers each tune of
# the book once, and music21 ships overlapping files that hold other transcriptions of
# the same numbers (2,009 entries, 1,838 numbers in music21 10.5). Deduplication keeps
# the first entry of each number there.
CATALOGUE_NUMBERED = frozenset({"oneills1850"})


@dataclass(frozen=True)
class CorpusOptions:
    """Settings for turning sources into training tunes.

    normalise: drop comments, `%%` directives and header fields that carry no music
        (everything but X T M L K R Q P V), write fields as `K:G` and every
        reference number as `X:1`, trim spaces at
        both ends of a line and turn tabs into spaces. When False, tune text is
        kept as written, apart from blank lines inside a tune, which are removed.
    drop_titles: remove `T:` lines.
    drop_chords: remove double-quoted chord symbols and annotations.
    drop_decorations: remove `!...!` and `+...+` decorations and the one-character
        shorthands `~ . H L M O P S T u v` placed before a note, chord or rest.
    deduplicate: keep only the first of tunes whose text is identical apart from
        the `X:` line, and in a collection numbered by catalogue (O'Neill's) the
        first entry of each `X:` number.
    """

    normalise: bool = True
    drop_titles: bool = False
    drop_chords: bool = False
    drop_decorations: bool = False
    deduplicate: bool = True


@dataclass(frozen=True)
class SourceSummary:
    """One source as given, what kind it is, and how many files and tunes it gave."""

    source: str
    kind: str  # "file", "folder" or "collection"
    path: str
    files: int
    tunes: int


@dataclass
class CorpusReport:
    """Counts of what reading the sources found, kept and dropped."""

    sources: list[SourceSummary] = field(default_factory=list)
    files_read: int = 0
    tunes_found: int = 0
    tunes_kept: int = 0
    duplicates_removed: int = 0
    tunes_without_music: int = 0
    dropped_lines: int = 0  # non-blank lines outside any tune
    fragments: list[str] = field(default_factory=list)
    normalised: NormaliseCounts = field(default_factory=NormaliseCounts)
    warnings: list[str] = field(default_factory=list)

    def dropped(self) -> dict[str, object]:
        """Return what was dropped, by kind, as a JSON-ready dict of counts."""
        return {
            "duplicate_tunes": self.duplicates_removed,
            "tunes_without_music": self.tunes_without_music,
            "lines_outside_tunes": self.dropped_lines,
            "fragments": len(self.fragments),
            **self.normalised.to_dict(),
        }


@dataclass(frozen=True)
class Corpus:
    """Tunes ready for training, and the report of how they were made."""

    tunes: list[str]
    report: CorpusReport


def music21_corpus_root() -> Path | None:
    """Return music21's `corpus` folder without importing music21, or None."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "corpus"


def collection_files(name: str) -> tuple[Path, list[Path]]:
    """Return the folder of a music21 collection and its sorted `.abc` files."""
    root = music21_corpus_root()
    if root is None:
        raise CorpusError(
            f"corpus collection {name!r} comes with music21, which is not installed; "
            "install it with 'pip install music21' or pass an .abc file or folder"
        )
    folder = root / COLLECTIONS[name]
    files = sorted(folder.glob("**/*.abc"))
    if not files:
        raise CorpusError(
            f"corpus collection {name!r} has no .abc files in {folder}; "
            "reinstall music21 or pass an .abc file or folder"
        )
    return folder, files


def find_collection(source: str) -> str | None:
    """Return the collection name that matches `source`, ignoring case, or None."""
    for name in COLLECTIONS:
        if name.lower() == source.lower():
            return name
    return None


def resolve_source(source: str) -> tuple[str, Path, list[Path]]:
    """Return (kind, path, files) for one source: a collection, file or folder.

    A collection name takes precedence over a file or folder with the same name;
    write `./NAME` to read the folder.
    """
    name = find_collection(source)
    if name is not None:
        folder, files = collection_files(name)
        return "collection", folder, files

    path = Path(source)
    if path.is_file():
        return "file", path, [path]
    if path.is_dir():
        files = sorted(path.glob("**/*.abc"))
        if not files:
            raise CorpusError(f"folder {source!r} contains no .abc files")
        return "folder", path, files
    raise CorpusError(
        f"corpus source {source!r} is not a file, a folder or a known collection; "
        f"collections: {', '.join(COLLECTIONS)}"
    )


def read_abc_file(path: Path, warnings: list[str]) -> str:
    """Read one ABC file as text, falling back to Latin-1 when it is not UTF-8.

    A UTF-8 byte order mark is removed. Files over MAX_FILE_BYTES are rejected.
    A fallback to Latin-1 appends a message to `warnings`.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CorpusError(
            f"corpus file {path} is {size / 2**20:.1f} MiB, over the limit of "
            f"{MAX_FILE_BYTES // 2**20} MiB for one file; split it into smaller files"
        )
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        warnings.append(
            f"{path}: invalid UTF-8 at byte offset {error.start}; read as Latin-1"
        )
        return data.decode("latin-1")


def load_corpus(
    sources: Sequence[str], options: CorpusOptions = CorpusOptions()
) -> Corpus:
    """Read, split, normalise and deduplicate the tunes of every source, in order.

    Raises CorpusError for a missing or unknown source, an oversized file, or when
    no tune at all is left.
    """
    if isinstance(sources, str):
        sources = [sources]
    if not sources:
        raise CorpusError(
            f"no corpus source given; pass an .abc file, a folder or one of: "
            f"{', '.join(COLLECTIONS)}"
        )

    report = CorpusReport()
    tunes: list[str] = []
    seen: set[str] = set()
    for source in sources:
        kind, path, files = resolve_source(source)
        catalogue = find_collection(source) if kind == "collection" else None
        if catalogue not in CATALOGUE_NUMBERED:
            catalogue = None
        found = 0
        for file in files:
            found += _read_tunes(file, options, report, tunes, seen, catalogue)
        report.sources.append(SourceSummary(source, kind, str(path), len(files), found))

    report.tunes_kept = len(tunes)
    if not tunes:
        raise CorpusError(
            f"no tunes found in {', '.join(map(repr, sources))}; a tune starts with "
            "an 'X:' line and needs at least one line of music"
        )
    return Corpus(tunes, report)


def _read_tunes(
    path: Path,
    options: CorpusOptions,
    report: CorpusReport,
    tunes: list[str],
    seen: set[str],
    catalogue: str | None = None,
) -> int:
    """Add the tunes of one file to `tunes`; return how many tunes the file has.

    `catalogue` names a collection whose `X:` numbers identify tunes (see
    CATALOGUE_NUMBERED); a second entry with the same number there is a duplicate.
    """
    split = split_tunes(read_abc_file(path, report.warnings))
    report.files_read += 1
    report.tunes_found += len(split.tunes)
    report.dropped_lines += split.dropped_lines
    report.fragments.extend(split.fragments)
    _warn_about_fragments(path, split.fragments, report.warnings)

    for raw_tune in split.tunes:
        tune = normalise_tune(raw_tune, options, report.normalised)
        if not any(is_music_line(line) for line in tune.split("\n")):
            report.tunes_without_music += 1
            continue
        key = tune.partition("\n")[2]  # the tune without its X: line
        number = header_fields(raw_tune).get("X", "").strip()
        catalogue_key = f"{catalogue}\x00X:{number}" if catalogue and number else None
        if options.deduplicate and (key in seen or catalogue_key in seen):
            report.duplicates_removed += 1
            continue
        seen.add(key)
        if catalogue_key:
            seen.add(catalogue_key)
        tunes.append(tune)
    return len(split.tunes)


def _warn_about_fragments(
    path: Path, fragments: list[str], warnings: list[str]
) -> None:
    """Warn about lines of music or text outside any tune; comments pass silently."""
    lines = [line for fragment in fragments for line in fragment.split("\n")]
    music = [line for line in lines if not line.startswith("%")]
    if music:
        warnings.append(
            f"{path}: dropped {len(music)} line(s) outside any tune "
            f"(no X: line before them), the first is {music[0]!r}"
        )


def split_corpus(
    tunes: list[str], valid_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split tunes into (train, valid) at random, reproducibly for a given seed.

    The validation share is rounded to a whole number of tunes, at least 1 and at
    most len(tunes) - 1. Both lists keep the corpus order.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(
            f"valid fraction {valid_fraction} is out of range; use a value "
            "between 0 and 1, e.g. 0.1"
        )
    if len(tunes) < 2:
        raise CorpusError(
            f"the corpus has {len(tunes)} tune(s), but a train/valid split needs "
            "at least 2; add more tunes"
        )

    order = list(range(len(tunes)))
    random.Random(seed).shuffle(order)
    valid_count = min(max(1, round(len(tunes) * valid_fraction)), len(tunes) - 1)
    valid_indices = set(order[:valid_count])
    train = [tune for i, tune in enumerate(tunes) if i not in valid_indices]
    valid = [tune for i, tune in enumerate(tunes) if i in valid_indices]
    return train, valid


def join_tunes(tunes: list[str]) -> str:
    """Join tunes into one training text: each tune followed by a blank line."""
    return "\n\n".join(tunes) + "\n\n"


def corpus_stats(tunes: list[str]) -> dict[str, object]:
    """Count tunes, characters (of the joined text), meters, keys and tune lengths.

    Meters and keys map the `M:` and `K:` values to tune counts, most common first;
    "(none)" counts tunes without that field. Lengths are in characters per tune.
    """
    meters: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for tune in tunes:
        fields = header_fields(tune)
        meters[fields.get("M", "(none)")] += 1
        keys[fields.get("K", "(none)")] += 1

    lengths = [len(tune) for tune in tunes] or [0]
    return {
        "tunes": len(tunes),
        "characters": len(join_tunes(tunes)) if tunes else 0,
        "meters": dict(meters.most_common()),
        "keys": dict(keys.most_common()),
        "lengths": {
            "min": min(lengths),
            "median": statistics.median(lengths),
            "mean": round(statistics.fmean(lengths), 1),
            "max": max(lengths),
        },
    }
