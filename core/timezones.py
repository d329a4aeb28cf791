"""Windows time-zone names and their IANA equivalents.

Outlook and Graph speak Windows zone names ("W. Europe Standard Time") as well as IANA names;
Python's `zoneinfo` only knows IANA names. The mapping is CLDR's windowsZones.xml, territory
"001" (the zone Windows means by default), for the zones the product's customers and their
partners use; add a row when a customer needs another. One table serves the gateway's parser
and the Graph emulator, so they can never disagree on a zone.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WINDOWS_TO_IANA: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "tzone://Microsoft/Utc": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Calcutta",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "Canada Central Standard Time": "America/Regina",
    "E. South America Standard Time": "America/Sao_Paulo",
}


_zones: dict[str, tzinfo | None] = {"UTC": UTC, "Etc/UTC": UTC, "Etc/GMT": UTC, "GMT": UTC}


def zone_for(name: object) -> tzinfo | None:
    """The zone for an IANA or Windows name (None when it is neither). Cached, with a bound:
    names come from servers and tenants."""
    if type(name) is not str:
        return None
    try:
        return _zones[name]
    except KeyError:
        pass
    iana = WINDOWS_TO_IANA.get(name, name)
    zone: tzinfo | None
    try:
        zone = UTC if iana == "UTC" else ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if len(_zones) < 512:
        _zones[name] = zone
    return zone
