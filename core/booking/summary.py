"""The PDF summary a booking attaches to the booked Outlook event (seed 004: "Tilføj resumé").

One A4 document: the booking calendar's name, the slot's subject, its date and time in the
calendar's zone, who booked it, the form's fields as a two-column label/value table (values wrap
across lines and pages, nothing is cut), the documents attached with it, and a footer line on
every page with the reservation id, the creation time and the page number.

Dates are written out with localized weekday and month names ("Monday 7 January 2030, 09:00-10:00
(Europe/Oslo)" with an en dash, "Mandag 7. januar 2030, ..."); times are 24-hour "HH:MM" in every
language, and the
creation time in the footer is ISO-like ("2030-01-01 08:00"). The words come in English, Norwegian
(nb, nn, no), Danish, Swedish and German; a tag falls back to its base language, then to English,
as `core.i18n.text` does.

The PDF uses the built-in Helvetica, which shows Windows-1252 (Latin-1 plus typographic quotes,
dashes, € …), so æøåäöüß and friends come out right. Anything else degrades instead of raising:
decomposed to a base letter where one exists (ő → o, ﬁ → fi), else "?"; control and format
characters are dropped. The same summary gives the same bytes (the creation date is
`created_at`, or a fixed date when there is none).

fpdf2 is imported by `summary_pdf` itself, not here: importing `function_app` must stay cheap
(TARGETS P4).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Final

from core.timezones import zone_for

if TYPE_CHECKING:
    from fpdf import FPDF

MAX_FIELDS: Final = 200
MAX_LABEL_CHARS: Final = 200
MAX_VALUE_CHARS: Final = 10_000

EMPTY_VALUE: Final = "\N{EM DASH}"  # shown for a field left empty
_EN_DASH: Final = "\N{EN DASH}"


@dataclass(frozen=True, slots=True)
class SummaryField:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class BookingSummary:
    title: str  # the booking calendar's display name
    slot_subject: str  # the slot's subject as an admin wrote it
    start: datetime  # aware
    end: datetime  # aware
    time_zone: str  # IANA or Windows name; times are shown in it (UTC when it is neither)
    booker_name: str
    booker_email: str | None
    fields: tuple[SummaryField, ...]  # the form's fields, in the order the form sent them
    documents: tuple[str, ...] = ()  # names of the documents attached with it
    reference: str = ""  # the reservation id
    created_at: datetime | None = None
    language: str = "en"  # BCP 47


# ---------------------------------------------------------------------------------------------
# Words


@dataclass(frozen=True, slots=True)
class _Words:
    caption: str  # the document's heading, and its file name
    time: str
    booked_by: str
    email: str
    form: str
    documents: str
    reference: str
    created: str
    page: str
    date: str  # a long date, from {weekday} {day} {month} {year}
    weekdays: tuple[str, str, str, str, str, str, str]  # Monday first
    months: tuple[str, str, str, str, str, str, str, str, str, str, str, str]


_NORWEGIAN_MONTHS: Final = (
    "januar",
    "februar",
    "mars",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "desember",
)
_BOKMAL: Final = _Words(
    caption="Bookingsammendrag",
    time="Tidspunkt",
    booked_by="Booket av",
    email="E-post",
    form="Skjema",
    documents="Vedlagte dokumenter",
    reference="Referanse",
    created="Opprettet",
    page="Side",
    date="{weekday} {day}. {month} {year}",
    weekdays=("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag"),
    months=_NORWEGIAN_MONTHS,
)
_WORDS: Final[dict[str, _Words]] = {
    "en": _Words(
        caption="Booking summary",
        time="Time",
        booked_by="Booked by",
        email="E-mail",
        form="Form",
        documents="Attached documents",
        reference="Reference",
        created="Created",
        page="Page",
        date="{weekday} {day} {month} {year}",
        weekdays=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        months=(
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
    ),
    "nb": _BOKMAL,
    "no": _BOKMAL,
    "nn": _Words(
        caption="Bookingsamandrag",
        time="Tidspunkt",
        booked_by="Booka av",
        email="E-post",
        form="Skjema",
        documents="Vedlagde dokument",
        reference="Referanse",
        created="Oppretta",
        page="Side",
        date="{weekday} {day}. {month} {year}",
        weekdays=("måndag", "tysdag", "onsdag", "torsdag", "fredag", "laurdag", "sundag"),
        months=_NORWEGIAN_MONTHS,
    ),
    "da": _Words(
        caption="Bookingresumé",
        time="Tidspunkt",
        booked_by="Booket af",
        email="E-mail",
        form="Formular",
        documents="Vedhæftede dokumenter",
        reference="Reference",
        created="Oprettet",
        page="Side",
        date="{weekday} {day}. {month} {year}",
        weekdays=("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag"),
        months=(
            "januar",
            "februar",
            "marts",
            "april",
            "maj",
            "juni",
            "juli",
            "august",
            "september",
            "oktober",
            "november",
            "december",
        ),
    ),
    "sv": _Words(
        caption="Bokningssammanfattning",
        time="Tid",
        booked_by="Bokad av",
        email="E-post",
        form="Formulär",
        documents="Bifogade dokument",
        reference="Referens",
        created="Skapad",
        page="Sida",
        date="{weekday} {day} {month} {year}",
        weekdays=("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag"),
        months=(
            "januari",
            "februari",
            "mars",
            "april",
            "maj",
            "juni",
            "juli",
            "augusti",
            "september",
            "oktober",
            "november",
            "december",
        ),
    ),
    "de": _Words(
        caption="Buchungsübersicht",
        time="Zeit",
        booked_by="Gebucht von",
        email="E-Mail",
        form="Formular",
        documents="Angehängte Dokumente",
        reference="Referenz",
        created="Erstellt",
        page="Seite",
        date="{weekday}, {day}. {month} {year}",
        weekdays=("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
        months=(
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ),
    ),
}


def _words(language: str) -> _Words:
    """The words for a BCP 47 tag, falling back to its base language, then English."""
    tag = language.strip().replace("_", "-").lower()
    while tag:
        found = _WORDS.get(tag)
        if found is not None:
            return found
        tag = tag.rpartition("-")[0]
    return _WORDS["en"]


# ---------------------------------------------------------------------------------------------
# Text the core font can show

# Helvetica as fpdf2 writes it is WinAnsiEncoding (Windows-1252); these are its printable characters.
_SHOWABLE: Final = frozenset(
    char
    for char in bytes(range(256)).decode("cp1252", errors="ignore")
    if not unicodedata.category(char).startswith("C")
)
_SHOWABLE_OR_NEWLINE: Final = _SHOWABLE | {"\n"}
_LINE_BREAKS: Final = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Letters and signs NFKD does not decompose, with a readable stand-in.
_STAND_INS: Final[dict[str, str]] = {
    "\t": " ",
    "\u0110": "D",  # Đ
    "\u0111": "d",  # đ
    "\u0126": "H",  # Ħ
    "\u0127": "h",  # ħ
    "\u0131": "i",  # dotless i
    "\u0141": "L",  # Ł
    "\u0142": "l",  # ł
    "\u1e9e": "SS",  # ẞ
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2015": "—",
    "\u2032": "'",
    "\u2033": '"',
    "\u2044": "/",
    "\u2212": "-",
    "\u2215": "/",
}
_BLANK_LINES: Final = re.compile(r"\n[ \n]*\n")


def _stand_in(char: str) -> str:
    """What the core font shows for a character it has no glyph for (never raises)."""
    known = _STAND_INS.get(char)
    if known is not None:
        return known
    category = unicodedata.category(char)
    if category[0] == "M" or category in ("Cc", "Cf"):
        return ""  # a lone mark, a control or format character: nothing to show
    if category == "Zs":
        return " "
    if category in ("Cs", "Co", "Cn"):
        return "?"
    shown = []
    for part in unicodedata.normalize("NFKD", char):
        if part in _SHOWABLE:
            shown.append(part)
        elif part in _STAND_INS:
            shown.append(_STAND_INS[part])
        elif unicodedata.category(part)[0] != "M":
            shown.append("?")
    return "".join(shown) if shown else "?"


def _fit(text: str, *, lines: bool = False) -> str:
    """`text` as the core font can show it: composed, controls dropped, the rest degraded.
    One line unless `lines` (then line breaks stay, runs of blank lines fold into one)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    if not (_SHOWABLE_OR_NEWLINE if lines else _SHOWABLE).issuperset(text):
        text = "".join(
            char
            if char in _SHOWABLE
            else ("\n" if lines else " ")
            if char in _LINE_BREAKS
            else _stand_in(char)
            for char in text
        )
    if not lines:
        return " ".join(text.split())
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n ")


def _safe_name(name: str) -> str:
    """A file name of letters, digits, spaces and `-_.()` only."""
    name = unicodedata.normalize("NFC", name)
    kept = "".join(
        char if unicodedata.category(char)[0] in "LN" or char in " -_.()" else "_" for char in name
    )
    return " ".join(kept.split()).strip(" .") or "summary"


# ---------------------------------------------------------------------------------------------
# Dates and times


_NO_CREATION_DATE: Final = datetime(2000, 1, 1, tzinfo=UTC)  # a fixed date keeps the bytes stable


def _zone(name: str) -> tuple[tzinfo, str]:
    """The zone times are shown in, and how it is named (UTC when the name is no zone)."""
    try:
        zone = zone_for(name)
    except OSError:  # zoneinfo reads a file named after it: "Europe" is a directory, long names too long
        zone = None
    if zone is None:
        return UTC, "UTC"
    return zone, _fit(name) or "UTC"


def _long_date(moment: datetime, words: _Words) -> str:
    text = words.date.format(
        weekday=words.weekdays[moment.weekday()],
        day=moment.day,
        month=words.months[moment.month - 1],
        year=moment.year,
    )
    return text[:1].upper() + text[1:]


def _clock(moment: datetime) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"


def _iso_date(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def _when(summary: BookingSummary, words: _Words) -> str:
    """ "Monday 7 January 2030, 09:00-10:00 (Europe/Oslo)" (an en dash), in the calendar's zone;
    both dates when the slot ends on another day."""
    zone, zone_name = _zone(summary.time_zone)
    start, end = summary.start.astimezone(zone), summary.end.astimezone(zone)
    if start.date() == end.date():
        return f"{_long_date(start, words)}, {_clock(start)}{_EN_DASH}{_clock(end)} ({zone_name})"
    first, last = f"{_long_date(start, words)} {_clock(start)}", f"{_long_date(end, words)} {_clock(end)}"
    return f"{first} {_EN_DASH} {last} ({zone_name})"


# ---------------------------------------------------------------------------------------------
# The document


def _check(summary: BookingSummary) -> None:
    if len(summary.fields) > MAX_FIELDS:
        raise ValueError(f"a summary has at most {MAX_FIELDS} fields, not {len(summary.fields)}")
    for number, field in enumerate(summary.fields, start=1):
        if len(field.label) > MAX_LABEL_CHARS:
            raise ValueError(f"field {number}: a label has at most {MAX_LABEL_CHARS} characters")
        if len(field.value) > MAX_VALUE_CHARS:
            raise ValueError(f"field {number}: a value has at most {MAX_VALUE_CHARS} characters")
    for name, moment in (("start", summary.start), ("end", summary.end), ("created_at", summary.created_at)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")
    if summary.end < summary.start:
        raise ValueError("a slot ends after it starts")


_MARGIN: Final = 18.0  # mm
_FOOTER_SPACE: Final = 22.0  # mm kept free at the bottom of each page for the footer
_LABEL_WIDTH: Final = 55.0  # mm
_GAP: Final = 4.0  # mm between label and value
_LINE: Final = 5.0  # mm per line of 10 pt text
_GREY: Final = 100
_RULE_GREY: Final = 215
_PAGE_ALIAS: Final = "{nb}"
_LANGUAGE_TAG: Final = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")


def _row(pdf: FPDF, label: str, value: str) -> None:
    """One label/value row; the value wraps onto as many lines and pages as it needs."""
    from fpdf.enums import Align, MethodReturnValue, XPos, YPos

    pdf.set_font("helvetica", style="B", size=10)
    label_lines = pdf.multi_cell(_LABEL_WIDTH, _LINE, label, dry_run=True, output=MethodReturnValue.LINES)
    label_height = _LINE * max(1, len(label_lines) if isinstance(label_lines, list) else 1)
    if pdf.will_page_break(label_height + 2):
        pdf.add_page()
    top, page = pdf.y + 1.5, pdf.page

    pdf.set_font("helvetica", style="B", size=10)
    pdf.set_text_color(_GREY)
    pdf.set_xy(pdf.l_margin, top)
    pdf.multi_cell(_LABEL_WIDTH, _LINE, label, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    label_bottom = pdf.y

    pdf.set_font("helvetica", size=10)
    pdf.set_text_color(0)
    pdf.set_xy(pdf.l_margin + _LABEL_WIDTH + _GAP, top)
    value_width = pdf.epw - _LABEL_WIDTH - _GAP
    pdf.multi_cell(value_width, _LINE, value, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    bottom = pdf.y if pdf.page != page else max(label_bottom, pdf.y)

    pdf.set_draw_color(_RULE_GREY)
    pdf.line(pdf.l_margin, bottom + 1.5, pdf.l_margin + pdf.epw, bottom + 1.5)
    pdf.set_xy(pdf.l_margin, bottom + 1.5)


def _fitting(pdf: FPDF, text: str, width: float) -> str:
    """`text`, shortened with "…" until it fits in `width`."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def summary_pdf(summary: BookingSummary) -> bytes:
    """The summary as an A4 PDF. Raises ValueError past the limits (MAX_FIELDS, MAX_LABEL_CHARS,
    MAX_VALUE_CHARS), for naive times, or when the slot ends before it starts; never for text."""
    _check(summary)
    # Imported here, not at the top: fpdf2 (and Pillow, fontTools) would cost cold start (TARGETS P4).
    from fpdf import FPDF
    from fpdf.enums import Align, XPos, YPos

    words = _words(summary.language)
    zone, zone_name = _zone(summary.time_zone)
    notes = []
    if reference := _fit(summary.reference)[:200]:
        notes.append(f"{words.reference}: {reference}")
    if summary.created_at is not None:
        created = summary.created_at.astimezone(zone)
        notes.append(f"{words.created}: {_iso_date(created)} {_clock(created)} ({zone_name})")
    footer_text = "  ·  ".join(notes)

    class _Summary(FPDF):
        # The total-pages alias is live only while the page number is written, so "{nb}" typed
        # into a form stays as typed. The last footer leaves it on for the substitution at output.
        def header(self) -> None:
            self.str_alias_nb_pages = ""

        def footer(self) -> None:
            self.set_y(-_FOOTER_SPACE + 6)
            self.set_draw_color(_RULE_GREY)
            self.line(self.l_margin, self.y, self.l_margin + self.epw, self.y)
            self.set_font("helvetica", size=8)
            self.set_text_color(_GREY)
            page_width = 28.0
            self.set_xy(self.l_margin, self.y + 1)
            self.cell(self.epw - page_width, _LINE, _fitting(self, footer_text, self.epw - page_width - 2))
            self.str_alias_nb_pages = _PAGE_ALIAS
            self.cell(page_width, _LINE, f"{words.page} {self.page_no()}/{_PAGE_ALIAS}", align=Align.R)

    pdf = _Summary(orientation="portrait", unit="mm", format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=_FOOTER_SPACE)
    pdf.set_creation_date(summary.created_at or _NO_CREATION_DATE)
    title = _fit(summary.title)
    pdf.set_title(f"{words.caption}: {title}" if title else words.caption)
    if subject := _fit(summary.slot_subject):
        pdf.set_subject(subject)
    pdf.set_creator("m365-bridge")
    if _LANGUAGE_TAG.fullmatch(summary.language.strip()):
        pdf.set_lang(summary.language.strip())
    pdf.add_page()

    def paragraph(text: str, size: float, style: str = "", grey: int = 0, after: float = 0.0) -> None:
        pdf.set_font("helvetica", style=style, size=size)
        pdf.set_text_color(grey)
        pdf.multi_cell(0, size * 0.5, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(after)

    paragraph(words.caption, 10, grey=_GREY, after=1)
    if title:
        paragraph(title, 18, style="B", after=1)
    if subject:
        paragraph(subject, 13, after=1)
    pdf.ln(3)

    _row(pdf, words.time, _when(summary, words))
    _row(pdf, words.booked_by, _fit(summary.booker_name) or EMPTY_VALUE)
    if summary.booker_email is not None:
        _row(pdf, words.email, _fit(summary.booker_email) or EMPTY_VALUE)

    if summary.fields:
        pdf.ln(6)
        paragraph(words.form, 12, style="B", after=1)
        for field in summary.fields:
            _row(pdf, _fit(field.label) or EMPTY_VALUE, _fit(field.value, lines=True) or EMPTY_VALUE)

    if summary.documents:
        pdf.ln(6)
        paragraph(words.documents, 12, style="B", after=1)
        for document in summary.documents:
            paragraph(f"•  {_fit(document) or EMPTY_VALUE}", 10)

    return bytes(pdf.output())


def summary_file_name(summary: BookingSummary) -> str:
    """ "Booking summary 2030-01-07 0900.pdf" in the summary's language and the calendar's zone;
    letters, digits, spaces and `-_.()` only. Raises ValueError for a naive start."""
    if summary.start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    start = summary.start.astimezone(_zone(summary.time_zone)[0])
    stamp = f"{_iso_date(start)} {start.hour:02d}{start.minute:02d}"
    return _safe_name(f"{_words(summary.language).caption} {stamp}") + ".pdf"
