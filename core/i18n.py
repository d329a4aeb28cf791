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
    BOOKED_BY = "booked_by"  # before the booker's name in a booked slot's body and notification
    BOOKING_REFERENCE = "booking_reference"
    BOOKING_CANCELLED = "booking_cancelled"  # the subject of the attendees' cancellation notice
    YES = "yes"  # a ticked form field in a booking summary
    NO = "no"


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
    Text.BOOKED_BY: {
        "en": "Booked by",
        "nb": "Booket av",
        "nn": "Booka av",
        "no": "Booket av",
        "da": "Booket af",
        "sv": "Bokad av",
        "fi": "Varaaja",
        "is": "Bókað af",
        "de": "Gebucht von",
        "nl": "Geboekt door",
        "fr": "Réservé par",
    },
    Text.BOOKING_REFERENCE: {
        "en": "Reference",
        "nb": "Referanse",
        "nn": "Referanse",
        "no": "Referanse",
        "da": "Reference",
        "sv": "Referens",
        "fi": "Viite",
        "is": "Tilvísun",
        "de": "Referenz",
        "nl": "Referentie",
        "fr": "Référence",
    },
    Text.BOOKING_CANCELLED: {
        "en": "Booking cancelled",
        "nb": "Booking avlyst",
        "nn": "Booking avlyst",
        "no": "Booking avlyst",
        "da": "Booking aflyst",
        "sv": "Bokning avbokad",
        "fi": "Varaus peruttu",
        "is": "Bókun afturkölluð",
        "de": "Buchung storniert",
        "nl": "Boeking geannuleerd",
        "fr": "Réservation annulée",
    },
    Text.YES: {
        "en": "Yes",
        "nb": "Ja",
        "nn": "Ja",
        "no": "Ja",
        "da": "Ja",
        "sv": "Ja",
        "fi": "Kyllä",
        "is": "Já",
        "de": "Ja",
        "nl": "Ja",
        "fr": "Oui",
    },
    Text.NO: {
        "en": "No",
        "nb": "Nei",
        "nn": "Nei",
        "no": "Nei",
        "da": "Nej",
        "sv": "Nej",
        "fi": "Ei",
        "is": "Nei",
        "de": "Nein",
        "nl": "Nee",
        "fr": "Non",
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
