"""The PDF summary attached to a booked event: every label and value readable back out of the PDF
(Nordic and German letters included), long values wrapping across pages uncut, times in the
calendar's zone across a daylight-saving change, words and file name in the tenant's language,
text outside the core font degrading instead of raising, the same input giving the same bytes,
the guards on size, and fpdf2 staying out of import time."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from core.booking.summary import (
    EMPTY_VALUE,
    MAX_FIELDS,
    MAX_LABEL_CHARS,
    MAX_VALUE_CHARS,
    BookingSummary,
    SummaryField,
    summary_file_name,
    summary_pdf,
)

ROOT = Path(__file__).resolve().parents[2]
OSLO = ZoneInfo("Europe/Oslo")
# Monday 7 January 2030, 09:00-10:00 in Oslo (CET, UTC+1)
START = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
DASH = "\N{EN DASH}"  # between the start and end times


def summary(*fields: SummaryField, **changes: object) -> BookingSummary:
    base = BookingSummary(
        title="Rådgivning på Ærø",
        slot_subject="Konsultasjon",
        start=START,
        end=START + timedelta(hours=1),
        time_zone="Europe/Oslo",
        booker_name="Kari Nordmann",
        booker_email="kari@example.no",
        fields=fields,
        documents=("cv.pdf", "søknad.docx"),
        reference="res-7f3a",
        created_at=datetime(2030, 1, 1, 8, 0, tzinfo=UTC),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def body_text(data: bytes) -> str:
    """The text without the footer line that ends each page (it would split a value in two)."""
    pages = [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]
    footer = re.compile(r"\n[^\n]*Page \d+/\d+$")
    return "\n".join(footer.sub("", page) for page in pages)


def flat(text: str) -> str:
    """Whitespace folded to single spaces: where a line wrapped does not matter."""
    return " ".join(text.split())


def page_count(data: bytes) -> int:
    return len(PdfReader(io.BytesIO(data)).pages)


def squeezed(text: str) -> str:
    return "".join(text.split())


# --- content -------------------------------------------------------------------------------------


def test_given_a_nordic_and_german_form_when_rendered_then_every_label_and_value_is_in_the_pdf() -> None:
    fields = (
        SummaryField("Favorittsyltetøy", "Blåbærsyltetøy"),
        SummaryField("Ø", "Ærø"),
        SummaryField("Größe", "Straße, Übergröße"),
        SummaryField("Svenska", "Smörgåsbord på Öland"),
        SummaryField("Dansk", "Rødgrød med fløde"),
        SummaryField(
            "Typography",
            "\N{LEFT DOUBLE QUOTATION MARK}quoted\N{RIGHT DOUBLE QUOTATION MARK} "
            "\N{EN DASH} dash \N{EM DASH} €5 … "
            "\N{LEFT SINGLE QUOTATION MARK}single\N{RIGHT SINGLE QUOTATION MARK}",
        ),
    )
    text = pdf_text(summary_pdf(summary(*fields)))

    for field in fields:
        assert field.label in text
        assert field.value in text
    for expected in ("Rådgivning på Ærø", "Konsultasjon", "Kari Nordmann", "kari@example.no"):
        assert expected in text
    for document in ("cv.pdf", "søknad.docx"):
        assert document in text


def test_given_a_summary_when_rendered_then_it_is_one_a4_page_with_heading_booker_documents_and_footer() -> (
    None
):
    data = summary(SummaryField("Name", "Ola"))
    out = summary_pdf(data)
    reader = PdfReader(io.BytesIO(out))
    text = pdf_text(out)

    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    assert text.index("Booking summary") < text.index("Rådgivning på Ærø") < text.index("Booked by")
    assert text.index("Kari Nordmann") < text.index("Form") < text.index("Attached documents")
    assert "Reference: res-7f3a" in text
    assert "Created: 2030-01-01 09:00 (Europe/Oslo)" in text
    assert "Page 1/1" in text
    assert reader.metadata is not None
    assert reader.metadata.title == "Booking summary: Rådgivning på Ærø"


def test_given_fields_in_a_form_order_when_rendered_then_the_table_keeps_that_order() -> None:
    fields = tuple(SummaryField(f"Question {n:02d}", f"Answer {n:02d}") for n in (3, 1, 2))
    text = pdf_text(summary_pdf(summary(*fields)))

    positions = [text.index(f"Answer {n:02d}") for n in (3, 1, 2)]
    assert positions == sorted(positions)


def test_given_an_empty_value_when_rendered_then_it_shows_a_dash() -> None:
    text = pdf_text(summary_pdf(summary(SummaryField("Comments", ""), SummaryField("Blank", "  \n "))))

    assert f"Comments {EMPTY_VALUE}" in text
    assert f"Blank {EMPTY_VALUE}" in text


def test_given_a_booker_without_email_and_no_documents_when_rendered_then_those_lines_are_left_out() -> None:
    text = pdf_text(summary_pdf(summary(booker_email=None, documents=(), reference="", created_at=None)))

    assert "E-mail" not in text
    assert "Attached documents" not in text
    assert "Reference" not in text
    assert "Created" not in text
    assert "Page 1/1" in text


@pytest.mark.parametrize(
    "value",
    [
        " ".join(f"word{n:04d}" for n in range(600))[:5000],  # wraps at spaces
        "".join(f"{n:04d}" for n in range(1250)),  # one 5,000-character word: wraps mid-word
        "\n".join(f"line {n:04d} of a textarea" for n in range(220))[:5000],  # many short lines
    ],
    ids=["words", "one-word", "lines"],
)
def test_given_a_5000_character_value_when_rendered_then_it_spans_pages_and_nothing_is_cut(
    value: str,
) -> None:
    assert len(value) == 5000
    data = summary_pdf(summary(SummaryField("Before", "first"), SummaryField("Long", value)))

    assert page_count(data) >= 2
    assert squeezed(value) in squeezed(body_text(data))


def test_given_the_largest_allowed_summary_when_rendered_then_it_does_not_raise() -> None:
    fields = tuple(
        SummaryField(
            "L" * MAX_LABEL_CHARS if n == 0 else f"Field {n}", "v" * (MAX_VALUE_CHARS if n == 0 else 3)
        )
        for n in range(MAX_FIELDS)
    )
    text = body_text(summary_pdf(summary(*fields)))

    assert "v" * MAX_VALUE_CHARS in squeezed(text)
    assert "Field 199" in text


# --- time zones and languages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_utc", "expected"),
    [
        # Saturday: Oslo is on CET (UTC+1), 08:00 UTC is 09:00 local
        (datetime(2030, 3, 30, 8, 0, tzinfo=UTC), f"Saturday 30 March 2030, 09:00{DASH}10:00 (Europe/Oslo)"),
        # Sunday 31 March 2030: clocks went forward at 02:00, CEST (UTC+2), 07:00 UTC is 09:00 local
        (datetime(2030, 3, 31, 7, 0, tzinfo=UTC), f"Sunday 31 March 2030, 09:00{DASH}10:00 (Europe/Oslo)"),
    ],
)
def test_given_a_slot_around_the_daylight_saving_change_when_rendered_then_times_are_in_the_calendars_zone(
    start_utc: datetime, expected: str
) -> None:
    data = summary(start=start_utc, end=start_utc + timedelta(hours=1), created_at=None)
    text = flat(pdf_text(summary_pdf(data)))

    assert expected in text
    assert f"{start_utc:%H:%M}{DASH}" not in text  # not the UTC time
    assert summary_file_name(data).endswith(f"{start_utc:%Y-%m-%d} 0900.pdf")


def test_given_a_windows_zone_name_when_rendered_then_times_are_in_that_zone() -> None:
    start = datetime(2030, 3, 31, 7, 0, tzinfo=UTC)  # Berlin is on CEST that day too
    data = summary(start=start, end=start + timedelta(minutes=30), time_zone="W. Europe Standard Time")

    assert f"09:00{DASH}09:30 (W. Europe Standard Time)" in flat(pdf_text(summary_pdf(data)))


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "Europe", "x" * 300, ""])
def test_given_an_unknown_zone_name_when_rendered_then_times_are_shown_in_utc(name: str) -> None:
    data = summary(time_zone=name)

    assert f"08:00{DASH}09:00 (UTC)" in flat(pdf_text(summary_pdf(data)))
    assert summary_file_name(data) == "Booking summary 2030-01-07 0800.pdf"


def test_given_a_slot_past_midnight_when_rendered_then_both_dates_are_shown() -> None:
    start = datetime(2030, 1, 7, 22, 0, tzinfo=OSLO)
    text = flat(pdf_text(summary_pdf(summary(start=start, end=start + timedelta(hours=3)))))

    assert f"Monday 7 January 2030 22:00 {DASH} Tuesday 8 January 2030 01:00 (Europe/Oslo)" in text


@pytest.mark.parametrize(
    ("language", "heading", "when", "booked_by"),
    [
        ("en", "Booking summary", f"Monday 7 January 2030, 09:00{DASH}10:00", "Booked by"),
        ("en-GB", "Booking summary", f"Monday 7 January 2030, 09:00{DASH}10:00", "Booked by"),
        ("nb", "Bookingsammendrag", f"Mandag 7. januar 2030, 09:00{DASH}10:00", "Booket av"),
        ("nb-NO", "Bookingsammendrag", f"Mandag 7. januar 2030, 09:00{DASH}10:00", "Booket av"),
        ("no", "Bookingsammendrag", f"Mandag 7. januar 2030, 09:00{DASH}10:00", "Booket av"),
        ("nn", "Bookingsamandrag", f"Måndag 7. januar 2030, 09:00{DASH}10:00", "Booka av"),
        ("da-DK", "Bookingresumé", f"Mandag 7. januar 2030, 09:00{DASH}10:00", "Booket af"),
        ("sv", "Bokningssammanfattning", f"Måndag 7 januari 2030, 09:00{DASH}10:00", "Bokad av"),
        ("de-AT", "Buchungsübersicht", f"Montag, 7. Januar 2030, 09:00{DASH}10:00", "Gebucht von"),
        ("fr", "Booking summary", f"Monday 7 January 2030, 09:00{DASH}10:00", "Booked by"),  # no French yet
        ("", "Booking summary", f"Monday 7 January 2030, 09:00{DASH}10:00", "Booked by"),
    ],
)
def test_given_a_language_when_rendered_then_words_and_dates_are_in_it_with_fallback(
    language: str, heading: str, when: str, booked_by: str
) -> None:
    text = flat(pdf_text(summary_pdf(summary(SummaryField("x", "y"), language=language))))

    assert heading in text
    assert when in text
    assert booked_by in text


# --- file name -----------------------------------------------------------------------------------

SAFE_NAME = re.compile(r"[\w .()-]+\.pdf")


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Booking summary 2030-01-07 0900.pdf"),
        ("da", "Bookingresumé 2030-01-07 0900.pdf"),
        ("nb-NO", "Bookingsammendrag 2030-01-07 0900.pdf"),
        ("sv", "Bokningssammanfattning 2030-01-07 0900.pdf"),
        ("de", "Buchungsübersicht 2030-01-07 0900.pdf"),
        ("xx", "Booking summary 2030-01-07 0900.pdf"),
    ],
)
def test_given_a_language_when_naming_the_file_then_the_name_is_localized_in_the_calendars_zone_and_safe(
    language: str, expected: str
) -> None:
    name = summary_file_name(summary(language=language))

    assert name == expected
    assert SAFE_NAME.fullmatch(name)
    assert not set(name) & set('/\\:*?"<>|\x00')


# --- text the font cannot show ---------------------------------------------------------------


def test_given_emoji_cjk_and_other_scripts_when_rendered_then_it_does_not_raise_and_degrades() -> None:
    fields = (
        SummaryField("Emoji 😀", "Great 🎉👍🏽 👨‍👩‍👧"),
        SummaryField("日本語", "会議室の予約"),
        SummaryField("Arabic", "مرحبا"),
        SummaryField("Polish", "Łódź, Gdańsk"),
        SummaryField("Hungarian", "Erdős ﬁnal ①"),
    )
    data = summary_pdf(summary(*fields, title="カレンダー", booker_name="Zoë 😀", documents=("报告.pdf",)))
    text = pdf_text(data)

    assert "Great ?" in text
    assert "Emoji ?" in text
    assert "Lódz, Gdansk" in text
    assert "Erdos final 1" in text
    assert "Zoë ?" in text
    assert "?.pdf" in text


def test_given_control_and_format_characters_when_rendered_then_they_are_stripped() -> None:
    fields = (
        SummaryField("Ctrl\x00\x07", "a\x00b\x1bc\u200bd\ufeffe"),
        SummaryField("Decomposed", "Bla\u030abærsyltetøy"),  # a + combining ring = å
        SummaryField("Lone surrogate", "x\ud800y"),
        SummaryField("Alias", "page {nb} stays as typed"),
    )
    text = pdf_text(summary_pdf(summary(*fields)))

    assert "Ctrl abcde" in text
    assert "Blåbærsyltetøy" in text
    assert "x?y" in text
    assert "page {nb} stays as typed" in text


def test_given_a_value_with_line_breaks_when_rendered_then_lines_are_kept_and_blank_runs_folded() -> None:
    text = pdf_text(summary_pdf(summary(SummaryField("Notes", "first\r\nsecond\u2028third\n\n\n\n\nfourth"))))

    assert "first\nsecond\nthird\n" in text
    assert "fourth" in text
    assert "\n\n\n" not in text


# --- determinism ---------------------------------------------------------------------------------


def test_given_the_same_summary_twice_when_rendered_then_the_bytes_are_identical() -> None:
    fields = (SummaryField("Favorittsyltetøy", "Blåbærsyltetøy"), SummaryField("Long", "x " * 3000))

    first = summary_pdf(summary(*fields))
    second = summary_pdf(summary(*fields))

    assert first == second
    assert summary_pdf(summary(*fields, created_at=None)) == summary_pdf(summary(*fields, created_at=None))


def test_given_a_creation_time_when_rendered_then_the_pdf_creation_date_is_it() -> None:
    created = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    metadata = PdfReader(io.BytesIO(summary_pdf(summary(created_at=created)))).metadata

    assert metadata is not None
    assert metadata.creation_date == created


# --- guards --------------------------------------------------------------------------------------


def test_given_more_than_200_fields_when_rendered_then_it_raises_value_error() -> None:
    fields = tuple(SummaryField(f"F{n}", "v") for n in range(MAX_FIELDS + 1))

    with pytest.raises(ValueError, match="at most 200 fields"):
        summary_pdf(summary(*fields))


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (SummaryField("L" * (MAX_LABEL_CHARS + 1), "v"), "label"),
        (SummaryField("Label", "v" * (MAX_VALUE_CHARS + 1)), "value"),
    ],
    ids=["label", "value"],
)
def test_given_a_too_long_label_or_value_when_rendered_then_it_raises_value_error(
    field: SummaryField, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        summary_pdf(summary(field))


@pytest.mark.parametrize(
    "changes",
    [
        {"start": datetime(2030, 1, 7, 9, 0)},  # naive
        {"created_at": datetime(2030, 1, 1, 9, 0)},  # naive
        {"end": START - timedelta(minutes=1)},  # ends before it starts
    ],
    ids=["naive-start", "naive-created", "end-before-start"],
)
def test_given_bad_times_when_rendered_then_it_raises_value_error(changes: dict[str, datetime]) -> None:
    with pytest.raises(ValueError, match=r"aware|ends"):
        summary_pdf(summary(**changes))


def test_given_a_naive_start_when_naming_the_file_then_it_raises_value_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        summary_file_name(summary(start=datetime(2030, 1, 7, 9, 0)))


# --- cold start ----------------------------------------------------------------------------------


def test_given_the_summary_module_when_imported_then_fpdf_is_not_loaded() -> None:
    # fpdf2 pulls in Pillow and fontTools; it loads with the first summary, never at import (P4).
    code = (
        "import sys, core.booking.summary; "
        "print(sorted(m for m in ('fpdf', 'PIL', 'fontTools') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- properties ----------------------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=300)  # surrogates included
plain_text = st.text(
    st.characters(categories=("L", "N", "P", "Zs"), max_codepoint=0xFF), min_size=1, max_size=300
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.lists(st.text(st.characters(exclude_categories=()), max_size=MAX_LABEL_CHARS), max_size=5),
    value=any_text,
    title=any_text,
    name=any_text,
    document=any_text,
    language=st.text(max_size=12),
)
def test_given_arbitrary_text_when_rendered_then_it_never_raises_and_the_pdf_parses(
    labels: list[str], value: str, title: str, name: str, document: str, language: str
) -> None:
    fields = tuple(SummaryField(label, value) for label in labels) or (SummaryField("v", value),)
    data = summary(
        *fields,
        title=title,
        slot_subject=value[:50],
        booker_name=name,
        booker_email=value[:20],
        documents=(document,),
        reference=value[:30],
        time_zone=title[:20],
        language=language,
    )

    out = summary_pdf(data)
    name_out = summary_file_name(data)

    assert page_count(out) >= 1
    assert pdf_text(out)
    assert SAFE_NAME.fullmatch(name_out)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=plain_text)
def test_given_latin1_text_when_rendered_then_all_of_it_reads_back(value: str) -> None:
    text = pdf_text(summary_pdf(summary(SummaryField("Value", value))))

    assert squeezed(value) in squeezed(text)
