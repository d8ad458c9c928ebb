"""Tests for scripts/abc2midi_agreement.py: reading abc2midi's messages and sorting
each disagreement with our checker into a kind.

Most cases pass abc2midi messages written out by hand, copied from what abc2midi
printed for such tunes, so the classification is tested without running it. A
few tests run abc2midi itself.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import abc2midi_agreement as agreement  # noqa: E402

from abcrnn.abc.midi import AbcMessage  # noqa: E402
from abcrnn.errors import RenderError  # noqa: E402

HEADER = "X:1\nT:{title}\nM:{meter}\nL:{unit}\nK:{key}\n"


def tune(body: str, meter: str = "4/4", unit: str = "1/8", title: str = "t") -> str:
    return HEADER.format(title=title, meter=meter, unit=unit, key="D") + body


def warning(line: int, column: int, text: str) -> AbcMessage:
    return AbcMessage("warning", line, column, text)


def bar_text(bar: int, units: str, meter: str, repeat: bool = False) -> str:
    suffix = " in repeat" if repeat else ""
    return (
        f"Track 0 Bar {bar} has {units} time units while the time signature "
        f"has {meter}{suffix}"
    )


def abc2midi_or_skip() -> None:
    from abcrnn.abc.midi import find_abc2midi

    try:
        find_abc2midi()
    except RenderError:
        pytest.skip("abc2midi is not installed")


# A pickup after a final double bar: `d4 d3|]` (7/8) and `A|` (1/8) make one bar.
# abc2midi reports the pickup; our checker pairs the two parts.
SPLIT_AFTER_DOUBLE_BAR = tune("A|d4 A2d2|e3c A2f2|d4 d3|]\nA|defg a4|b3a b2c'2|d4 d3|]")

# The second ending starts in mid-bar: `G2G [1 G2` and `G2G [2 G3` are both full.
MID_BAR_ENDING = tune(
    "c|B2c d2e|B2c d2e|G2G [1 G2:|\\\n[2 G3||B2G GAB|c2c c3|]", meter="6/8"
)


def test_bar_messages_reads_numbers():
    messages = [
        warning(9, 41, bar_text(12, "3/2", "2", repeat=True)),
        warning(3, 1, "Assuming repeat"),
        AbcMessage("error", 4, 2, "Malformed note : expecting a-g or A-G"),
    ]
    found = agreement.bar_messages(messages)
    assert len(found) == 1
    assert found[0].line == 9
    assert found[0].column == 41
    assert found[0].units == Fraction(3, 2)
    assert found[0].meter_units == 2
    assert found[0].in_repeat is True
    assert found[0].share == Fraction(3, 4)


def test_clean_by_messages_ignores_notices():
    notices = [
        warning(8, 31, "Assuming repeat"),
        warning(8, 31, "replacing |: with double repeat (::)"),
    ]
    assert agreement.clean_by_messages(notices) is True
    assert agreement.clean_by_messages([]) is True
    fault = warning(6, 19, bar_text(1, "6", "4"))
    assert agreement.clean_by_messages([*notices, fault]) is False


def test_locate_bar_finds_bar_before_position():
    from abcrnn.abc.parser import parse_tune

    bars = parse_tune(SPLIT_AFTER_DOUBLE_BAR).bars
    # Line 7 is "A|defg a4|...": column 2 is the bar line after the pickup.
    located = agreement.locate_bar(bars, 7, 2)
    assert (located.line, located.column) == (7, 1)
    assert agreement.locate_bar(bars, 6, 1) is None


def test_split_bar_is_abc2midi_rule():
    messages = [warning(7, 2, bar_text(4, "1/2", "4"))]
    result = agreement.compare_tune(SPLIT_AFTER_DOUBLE_BAR, messages)
    assert result.ours is False
    assert result.theirs is True
    assert result.kinds == ("split-bar",)
    assert result.agrees is False
    assert result.agrees_after_rules is True


def test_mid_bar_ending_counted_as_one_bar():
    # abc2midi adds the 3/8 of `[2 G3` to the next bar and reports 9 eighths there.
    messages = [warning(7, 15, bar_text(5, "9", "6"))]
    result = agreement.compare_tune(MID_BAR_ENDING, messages)
    assert result.valid is True
    assert result.kinds == ("mid-bar-ending",)
    assert result.agrees_after_rules is True


def test_fermata_lengthens_note_in_abc2midi():
    text = tune("GABc dBAG|GABc HG4|GABc dBAG|]")
    result = agreement.compare_tune(text, [warning(6, 19, bar_text(1, "6", "4"))])
    assert result.kinds == ("fermata",)


def test_other_fault_bar_not_measured():
    # `k` is not ABC, so our checker reports it and leaves the bar unmeasured.
    text = tune("GABc dBAG|kGABc dBAGA|GABc dBAG|]")
    result = agreement.compare_tune(text, [warning(6, 22, bar_text(1, "9/2", "4"))])
    assert result.valid is False
    assert result.ours is False
    assert result.kinds == ("other-fault",)
    assert result.agrees_after_rules is False


def test_unexplained_message_needs_review():
    text = tune("GABc dBAG|GABc dBAG|GABc dBAG|]")
    result = agreement.compare_tune(text, [warning(6, 20, bar_text(1, "5", "4"))])
    assert result.kinds == ("review",)
    assert result.agrees_after_rules is False


def test_both_flag_long_bar():
    text = tune("GABc dBAG|GABc dBAGA|GABc dBAG|]")
    result = agreement.compare_tune(text, [warning(6, 21, bar_text(1, "9/2", "4"))])
    assert result.ours is True
    assert result.theirs is True
    assert result.kinds == ()
    assert result.agrees is True


def test_ours_only_kinds():
    # G>c/ is 3/16 + 1/32 in ABC 2.1; abc2midi leaves unequal notes unchanged.
    broken = tune("GA Bc|G>c/ B2 z/|GA Bc|]", meter="2/4")
    unequal = AbcMessage(
        "error", 6, 9, "Cannot apply broken rhythm. Notes not equal durations"
    )
    assert agreement.compare_tune(broken, [unequal]).kinds == ("unequal-broken-rhythm",)
    long_bar = tune("GABc dBAG|GABc dBAGA|GABc dBAG|]")
    assert agreement.compare_tune(long_bar, []).kinds == ("abc2midi-silent",)


def test_summarise_counts_and_agreement():
    comparisons = [
        agreement.TuneComparison("s", 1, "a", True, False, True, False),
        agreement.TuneComparison("s", 2, "b", False, True, False, True),
        agreement.TuneComparison("s", 3, "c", True, False, False, True, ("split-bar",)),
        agreement.TuneComparison("s", 4, "d", False, True, True, False, ("x",)),
    ]
    figures = agreement.summarise(comparisons)
    assert figures["tunes"] == 4
    assert figures["valid_share"] == 0.5
    assert figures["ours_bar_faulty"] == 2
    assert figures["abc2midi_clean_share"] == 0.5
    assert figures["abc2midi_bar_faulty"] == 2
    assert figures["both_bar_faulty"] == 1
    assert figures["ours_only"] == 1
    assert figures["abc2midi_only"] == 1
    assert figures["agreement"] == 0.5
    assert figures["agreement_after_rules"] == 0.75
    assert figures["tunes_by_kind"] == {"split-bar": 1, "x": 1}


def test_abc2midi_run_fermata_and_carry():
    abc2midi_or_skip()
    folder_tunes = {
        "fermata": tune("GABc dBAG|GABc HG4|GABc dBAG|]"),
        # A short bar before :| and a second part with no pickup.
        "carry": tune(
            "c2|f2a2 e2g2|f2c2 c4|F2F2F2:|\n|:FAcA cAcA|GBdB dBdB|f2f2f2:|",
            meter="2/4",
            unit="1/16",
        ),
    }
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for kind, text in folder_tunes.items():
            messages = agreement.abc2midi_messages(text, Path(folder))
            assert agreement.compare_tune(text, messages).kinds == (kind,)


def test_main_writes_report(tmp_path, capsys):
    abc2midi_or_skip()
    path = tmp_path / "two.abc"
    text = tune("GABc dBAG|GABc dBAGA|GABc dBAG|]") + "\n\n"
    text += tune("GABc dBAG|GABc HG4|GABc dBAG|]", title="Held") + "\n"
    path.write_text(text, encoding="utf-8")
    report = tmp_path / "report.json"
    assert agreement.main([str(path), "--json", str(report)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: 2 tunes"
    assert lines[4] == "  agreement 50.0%, after abc2midi's listed rules 100.0%"
    assert lines[5] == "  fermata: 1 tune, e.g. 2 (Held)"
    assert report.is_file()
