"""What a form sends to book a slot (`POST …/booking-calendars/{id}/reservations`), checked
before anything is claimed or stored.

Documents are the form's uploads, base64 in the JSON body. Each is checked three ways: its
file name's extension is one a booking may carry, its declared content type fits that
extension, and its first bytes look like that kind of file (a renamed executable is refused
whatever its name says). Sizes are checked after decoding: at most `MAX_DOCUMENT_BYTES` each
and `MAX_TOTAL_BYTES` together, well inside Graph's 150 MB per attachment.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from core.request_errors import FieldProblem, InvalidInput
from core.validators import ApiModel, Email, parse, plain_text, valid_display_name

MAX_DOCUMENTS = 10
MAX_DOCUMENT_BYTES = 25 * 1024 * 1024
MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_FIELDS = 200
MAX_FIELD_LABEL = 200
MAX_FIELD_VALUE = 10_000
# The fields are kept in one Table Storage column (64 KiB of UTF-16): 30,000 characters of JSON.
MAX_FIELDS_JSON = 30_000

# extension -> (content types a form may declare for it, the one the event gets)
_TYPES: dict[str, tuple[frozenset[str], str]] = {
    "pdf": (frozenset({"application/pdf"}), "application/pdf"),
    "png": (frozenset({"image/png"}), "image/png"),
    "jpg": (frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}), "image/jpeg"),
    "jpeg": (frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}), "image/jpeg"),
    "gif": (frozenset({"image/gif"}), "image/gif"),
    "tif": (frozenset({"image/tiff"}), "image/tiff"),
    "tiff": (frozenset({"image/tiff"}), "image/tiff"),
    "heic": (frozenset({"image/heic", "image/heif"}), "image/heic"),
    "docx": (
        frozenset({"application/vnd.openxmlformats-officedocument.wordprocessingml.document"}),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    "xlsx": (
        frozenset({"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    "pptx": (
        frozenset({"application/vnd.openxmlformats-officedocument.presentationml.presentation"}),
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    "odt": (
        frozenset({"application/vnd.oasis.opendocument.text"}),
        "application/vnd.oasis.opendocument.text",
    ),
    "ods": (
        frozenset({"application/vnd.oasis.opendocument.spreadsheet"}),
        "application/vnd.oasis.opendocument.spreadsheet",
    ),
    "doc": (frozenset({"application/msword"}), "application/msword"),
    "xls": (frozenset({"application/vnd.ms-excel"}), "application/vnd.ms-excel"),
    "txt": (frozenset({"text/plain"}), "text/plain"),
    "csv": (frozenset({"text/csv", "text/plain", "application/vnd.ms-excel"}), "text/csv"),
    "xml": (frozenset({"application/xml", "text/xml"}), "application/xml"),
    "json": (frozenset({"application/json"}), "application/json"),
    "rtf": (frozenset({"application/rtf", "text/rtf"}), "application/rtf"),
}
ALLOWED_EXTENSIONS = tuple(sorted(_TYPES))
# Browsers send this when they do not know a type: accepted, the extension decides.
_UNKNOWN_TYPE = "application/octet-stream"

_ZIP = (b"PK\x03\x04",)
_OLE = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",)
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "tif": (b"II*\x00", b"MM\x00*"),
    "tiff": (b"II*\x00", b"MM\x00*"),
    "docx": _ZIP,
    "xlsx": _ZIP,
    "pptx": _ZIP,
    "odt": _ZIP,
    "ods": _ZIP,
    "doc": _OLE,
    "xls": _OLE,
    "rtf": (b"{\\rtf",),
}
_TEXT_KINDS = frozenset({"txt", "csv", "xml", "json"})
# Executables and scripts, whatever their name claims.
_EXECUTABLE = (b"MZ", b"\x7fELF", b"#!", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")

_FILE_NAME_FORBIDDEN = re.compile(r'[\\/:*?"<>|]')
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # newlines and tabs are fine
_VALUE_SURROGATE = re.compile(r"[\ud800-\udfff]")  # a lone surrogate: JSON carries it, storage cannot


def _file_name(value: str) -> str:
    value = plain_text(value.strip())
    if not value or len(value) > 200:
        raise ValueError("must be 1-200 characters")
    if _FILE_NAME_FORBIDDEN.search(value) or value.startswith("."):
        raise ValueError('must be a plain file name (no path, no \\ / : * ? " < > |)')
    extension = value.rpartition(".")[2].lower() if "." in value else ""
    if extension not in _TYPES:
        raise ValueError(f"must end in one of: {', '.join('.' + e for e in ALLOWED_EXTENSIONS)}")
    return value


def _slot_id(value: str) -> str:
    if not value or len(value) > 1024 or not value.isprintable():
        raise ValueError("must be the slotId of a listed slot")
    return value


def _token(value: str) -> str:
    if not 1 <= len(value) <= 200 or not value.isascii() or not value.isprintable():
        raise ValueError("must be 1-200 printable ASCII characters")
    return value


class DocumentIn(ApiModel):
    name: Annotated[str, AfterValidator(_file_name)]
    content_type: Annotated[str, Field(min_length=3, max_length=200)]
    content_base64: str


class BookerIn(ApiModel):
    name: Annotated[str, AfterValidator(valid_display_name)]
    email: Email | None = None
    phone: Annotated[str, Field(max_length=50), AfterValidator(plain_text)] | None = None


FieldValue = str | int | float | bool | None


class ReservationIn(ApiModel):
    slot_id: Annotated[str, AfterValidator(_slot_id)]
    booker: BookerIn
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    documents: list[DocumentIn] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    add_booker_as_attendee: bool = False
    # The slot's `version` as listed: the booking fails with 409 if the slot changed since.
    slot_version: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    idempotency_key: Annotated[str, AfterValidator(_token)] | None = None

    @model_validator(mode="after")
    def _attendee_needs_email(self) -> ReservationIn:
        if self.add_booker_as_attendee and not self.booker.email:
            raise ValueError("addBookerAsAttendee needs booker.email")
        return self


@dataclass(frozen=True, slots=True)
class Upload:
    """A checked document, decoded."""

    name: str
    content_type: str  # the canonical type for its extension
    content: bytes


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    spec: ReservationIn
    fields: dict[str, Any]
    uploads: tuple[Upload, ...]


def _check_fields(fields: dict[str, FieldValue]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if len(fields) > MAX_FIELDS:
        return [FieldProblem("fields", f"must have at most {MAX_FIELDS} entries")]
    for label, value in fields.items():
        where = f"fields.{label[:40]}" if label.isprintable() else "fields"
        if not label.strip() or len(label) > MAX_FIELD_LABEL or not label.isprintable():
            problems.append(
                FieldProblem("fields", f"each name must be 1-{MAX_FIELD_LABEL} printable characters")
            )
        elif isinstance(value, str) and (len(value) > MAX_FIELD_VALUE or _VALUE_CONTROL.search(value)):
            problems.append(
                FieldProblem(
                    where, f"must be at most {MAX_FIELD_VALUE} characters, without control characters"
                )
            )
        elif isinstance(value, str) and _VALUE_SURROGATE.search(value):
            problems.append(FieldProblem(where, "must be valid Unicode text"))
        elif isinstance(value, float) and value != value:  # NaN cannot be stored or shown
            problems.append(FieldProblem(where, "must be a number"))
    if not problems and len(json.dumps(fields, ensure_ascii=False)) > MAX_FIELDS_JSON:
        problems.append(FieldProblem("fields", f"must be at most {MAX_FIELDS_JSON} characters as JSON"))
    return problems


def _decode(index: int, doc: DocumentIn) -> tuple[Upload | None, list[FieldProblem]]:
    where = f"documents[{index}]"
    extension = doc.name.rpartition(".")[2].lower()
    declared, canonical = _TYPES[extension]
    content_type = doc.content_type.split(";")[0].strip().lower()
    problems: list[FieldProblem] = []
    if content_type not in declared and content_type != _UNKNOWN_TYPE:
        problems.append(FieldProblem(f"{where}.contentType", f"does not match a .{extension} file"))
    if len(doc.content_base64) > (MAX_DOCUMENT_BYTES * 4) // 3 + 8:
        return None, [*problems, FieldProblem(f"{where}.contentBase64", "is larger than 25 MB")]
    try:
        content = base64.b64decode(doc.content_base64, validate=True)
    except (binascii.Error, ValueError):
        return None, [*problems, FieldProblem(f"{where}.contentBase64", "must be base64")]
    if not content:
        problems.append(FieldProblem(f"{where}.contentBase64", "is empty"))
    elif len(content) > MAX_DOCUMENT_BYTES:
        problems.append(FieldProblem(f"{where}.contentBase64", "is larger than 25 MB"))
    elif content.startswith(_EXECUTABLE) or not _looks_like(extension, content):
        problems.append(FieldProblem(f"{where}.contentBase64", f"is not a .{extension} file"))
    if problems:
        return None, problems
    return Upload(doc.name, canonical, content), []


def _looks_like(extension: str, content: bytes) -> bool:
    if extension in _TEXT_KINDS:
        if b"\x00" in content[:8192]:
            return False
        try:
            content[:8192].decode("utf-8")
        except UnicodeDecodeError as exc:
            return exc.start >= 8188  # a character cut at the sample's end is fine
        return True
    magic = _MAGIC.get(extension)
    if magic is None:
        return True  # heic: a container format whose brand sits at offset 4
    return content.startswith(magic)


def parse_reservation(body: object) -> ReservationRequest:
    """The request, checked whole: every bad field is named in one 422, nothing is stored."""
    spec = parse(ReservationIn, body)
    problems = _check_fields(spec.fields)
    uploads: list[Upload] = []
    for index, doc in enumerate(spec.documents):
        upload, found = _decode(index, doc)
        problems += found
        if upload is not None:
            uploads.append(upload)
    if sum(len(u.content) for u in uploads) > MAX_TOTAL_BYTES:
        problems.append(FieldProblem("documents", "are larger than 50 MB together"))
    if problems:
        raise InvalidInput(problems)
    return ReservationRequest(spec, dict(spec.fields), tuple(uploads))
