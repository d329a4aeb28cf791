"""Field types the HTTP API validates: ids, names, URLs, language tags, time zones, accounts.

Each is an `Annotated` pydantic type whose validator normalises the value (lower-case GUIDs and
UPNs, canonical language-tag case) or raises ValueError with a message that never repeats the
value (it might be a secret pasted in the wrong field). `ApiModel` is the base of every request
model: camelCase JSON names, unknown fields refused, immutable.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from core.request_errors import InvalidInput, MalformedRequest, invalid_input
from core.settings import is_loopback_host
from core.store.keys import escape_key
from core.store.limits import MAX_KEY_UNITS, utf16_units
from core.timezones import WINDOWS_TO_IANA


def _field_title(name: str, _info: object) -> str:
    # the JSON Schema title of a field in the API document: "Host appointment id", not the
    # alias title-cased ("Hostappointmentid")
    return name.replace("_", " ").capitalize()


class ApiModel(BaseModel):
    """Base of request bodies: camelCase names only, unknown fields are errors."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
        hide_input_in_errors=True,
        field_title_generator=_field_title,
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def plain_text(value: str) -> str:
    """Refuse control characters and lone surrogates (JSON can carry them; storage cannot)."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if _SURROGATE.search(value):
        raise ValueError("must be valid Unicode text")
    return value


# The dates Exchange keeps calendars between: Graph refuses events and calendar views outside
# them (and near years 1 and 9999 Python's datetime runs out once a zone or a window is applied).
CALENDAR_EARLIEST = date(1601, 1, 1)
CALENDAR_LATEST = date(4500, 8, 31)
CALENDAR_RANGE = f"between {CALENDAR_EARLIEST} and {CALENDAR_LATEST}"


def in_calendar_range(moment: date) -> bool:
    """Whether a date lies in the range, or a date-time both as written and in UTC (checked in
    that order, so the conversion cannot overflow)."""
    if (
        not CALENDAR_EARLIEST
        <= (moment.date() if isinstance(moment, datetime) else moment)
        <= CALENDAR_LATEST
    ):
        return False
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return CALENDAR_EARLIEST <= moment.astimezone(UTC).date() <= CALENDAR_LATEST
    return True


# --- ids ---------------------------------------------------------------------------------------

TENANT_ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def valid_tenant_id(value: str) -> str:
    if not TENANT_ID_PATTERN.fullmatch(value):
        raise ValueError(
            "must be 1-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit"
        )
    return value


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_guid(value: str) -> bool:
    return bool(_GUID.fullmatch(value))


def valid_guid(value: str) -> str:
    if not is_guid(value):
        raise ValueError("must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return str(uuid.UUID(value))


TenantId = Annotated[str, AfterValidator(valid_tenant_id)]
Guid = Annotated[str, AfterValidator(valid_guid)]


# --- names -------------------------------------------------------------------------------------


def valid_display_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 200:
        raise ValueError("must be at most 200 characters")
    return plain_text(value)


DisplayName = Annotated[str, AfterValidator(valid_display_name)]


def valid_host_id(value: str, *, reserve: int = 0) -> str:
    """A host's id for something (a resource, an appointment): whatever the host uses, within
    reason. It becomes (part of) a row key, escaped; `reserve` is what the rest of that key
    takes."""
    if not value or not value.strip():
        raise ValueError("must not be empty")
    if len(value) > 256:
        raise ValueError("must be at most 256 characters")
    plain_text(value)
    if utf16_units(escape_key(value)) > MAX_KEY_UNITS - reserve:
        raise ValueError("is too long once encoded (use fewer special characters)")
    return value


def valid_resource_id(value: str) -> str:
    """A host's id for a resource (a row key of its own)."""
    return valid_host_id(value)


# --- accounts ----------------------------------------------------------------------------------

# A user principal name / SMTP address: local part and a dotted domain. Not the full RFC 5322
# grammar: Entra UPNs allow letters, digits and . _ - ' + (plus # for guests' #EXT# names).
_UPN = re.compile(
    r"[A-Za-z0-9._%+'#&!$*=?^`{|}~-]{1,113}"  # local part
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"  # dotted domain
)


def valid_account(value: str) -> str:
    """A Microsoft 365 account: a user principal name (lower-cased: Exchange compares them
    case-insensitively) or an Entra object id (a GUID, lower-cased)."""
    value = value.strip()
    if is_guid(value):
        return str(uuid.UUID(value))
    if len(value) > 256 or not _UPN.fullmatch(value) or value.startswith(".") or ".." in value:
        raise ValueError("must be a user principal name (name@domain) or an Entra object id (GUID)")
    return value.lower()


Account = Annotated[str, AfterValidator(valid_account)]


def valid_email(value: str) -> str:
    """An e-mail address (name@domain), lower-cased."""
    value = value.strip()
    if len(value) > 256 or not _UPN.fullmatch(value) or value.startswith(".") or ".." in value:
        raise ValueError("must be an e-mail address (name@domain)")
    return value.lower()


Email = Annotated[str, AfterValidator(valid_email)]


# --- URLs --------------------------------------------------------------------------------------


def valid_webhook_url(value: str) -> str:
    """Where events go: https, or plain http only to loopback (a test receiver)."""
    value = value.strip()
    if len(value) > 2048:
        raise ValueError("must be at most 2048 characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("must be an absolute https:// URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError("must use https (plain http only to localhost, for tests)")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the bridge signs every delivery instead")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return plain_text(value)


WebhookUrl = Annotated[str, AfterValidator(valid_webhook_url)]


# --- language and time zone --------------------------------------------------------------------

# BCP 47 language tags as hosts use them: language[-script][-region][-variant…], no private-use
# or extension subtags (user-visible text is chosen by language and region only).
_LANGUAGE_TAG = re.compile(
    r"(?P<language>[A-Za-z]{2,3})"
    r"(?:-(?P<script>[A-Za-z]{4}))?"
    r"(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)"
)


def valid_language(value: str) -> str:
    """A BCP 47 language tag in canonical case: `nb`, `da-DK`, `en-GB`, `zh-Hant-TW`."""
    match = _LANGUAGE_TAG.fullmatch(value.strip())
    if not match:
        raise ValueError("must be a BCP 47 language tag such as nb, da, en or en-GB")
    out = match["language"].lower()
    if match["script"]:
        out += "-" + match["script"].title()
    if match["region"]:
        out += "-" + match["region"].upper()
    return out + match["variants"].lower()


@cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_time_zone(value: str) -> str:
    """An IANA zone (`Europe/Oslo`) or a Windows zone name Outlook uses (`W. Europe Standard
    Time`), kept as given."""
    value = value.strip()
    if value in _iana_zones() or value in WINDOWS_TO_IANA:
        return value
    raise ValueError("must be an IANA time zone (e.g. Europe/Oslo) or a Windows time zone name")


Language = Annotated[str, AfterValidator(valid_language)]
TimeZoneName = Annotated[str, AfterValidator(valid_time_zone)]


# --- bodies ------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: object) -> M:
    """`body` (parsed JSON) as `model`; MalformedRequest if it is not a JSON object,
    InvalidInput naming every bad field otherwise."""
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def query_int(name: str, value: str | None, *, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; InvalidInput naming it otherwise."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidInput.one(name, f"must be a whole number from {low} to {high}")
    return number
