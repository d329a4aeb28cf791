"""Words the bridge itself puts in front of people, in the tenant's language.

A tenant's `language` is a BCP 47 tag (`nb`, `da-DK`, `en-GB`); lookups fall back from the full
tag to its language, then to English, so a tenant never gets a blank. Add a language by adding
one entry per text.
"""

from __future__ import annotations

from enum import StrEnum


class Text(StrEnum):
    PRIVATE_APPOINTMENT = "private_appointment"  # stands in for a private event's subject
    BOOKED_SUFFIX = "booked_suffix"  # appended to a booked slot's subject


_TEXTS: dict[Text, dict[str, str]] = {
    Text.PRIVATE_APPOINTMENT: {
        "en": "Private appointment",
        "nb": "Privat avtale",
        "nn": "Privat avtale",
        "no": "Privat avtale",
        "da": "Privat aftale",
        "sv": "Privat möte",
        "fi": "Yksityinen tapaaminen",
        "is": "Einkatími",
        "de": "Privater Termin",
        "nl": "Privéafspraak",
        "fr": "Rendez-vous privé",
    },
    Text.BOOKED_SUFFIX: {
        "en": " - Booked",
        "nb": " - Booket",
        "nn": " - Booka",
        "no": " - Booket",
        "da": " - Booket",
        "sv": " - Bokad",
        "fi": " - Varattu",
        "is": " - Bókað",
        "de": " - Gebucht",
        "nl": " - Geboekt",
        "fr": " - Réservé",
    },
}


def text(key: Text, language: str) -> str:
    """`key` in `language` (a BCP 47 tag), falling back to its base language, then English."""
    table = _TEXTS[key]
    tag = language.strip()
    while tag:
        found = table.get(tag) or table.get(tag.lower())
        if found is not None:
            return found
        tag = tag.rpartition("-")[0]
    return table["en"]
