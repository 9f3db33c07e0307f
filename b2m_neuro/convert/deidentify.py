"""De-identification of human recordings before they are written: subject fields and session dates.

By default the converters drop the subject's name and date of birth, write the age as an ISO 8601
duration (``"P34Y"``; 90 years or more as ``"P90Y/"``, "90 or older", as the HIPAA Safe Harbor rule
asks) and shift every session date by ``DEFAULT_DATE_SHIFT_DAYS`` days. The shift
is written into the NWB file's ``notes`` as ``date_shift_days=<n>`` (see :func:`deidentification_note`),
so intervals between a subject's sessions stay exact and the lab that holds the key can undo it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NoReturn

from b2m_neuro.errors import ConversionError

__all__ = [
    "DEFAULT_DATE_SHIFT_DAYS",
    "IDENTIFYING_SUBJECT_FIELDS",
    "AGE_CAP_YEARS",
    "iso_age",
    "cap_age",
    "deidentify_subject",
    "shift_date",
    "check_shift",
    "deidentification_note",
    "read_date_shift",
]

# 104 weeks back: about two years, and the weekday of each session is kept.
DEFAULT_DATE_SHIFT_DAYS = -728

# Ages from this many years on are written as an open range ("P90Y/": 90 or older).
AGE_CAP_YEARS = 90

# Subject fields that identify a person and are never written when de-identifying.
IDENTIFYING_SUBJECT_FIELDS = ("name", "date_of_birth")

_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?$"
)
_YEARS = re.compile(r"^\d+(\.\d+)?$")
_NOTE = re.compile(r"date_shift_days=(-?\d+)")


def iso_age(age: Any, *, file: str | None = None) -> str:
    """Return ``age`` as an ISO 8601 duration: a number of years (``34``, ``"34"`` -> ``"P34Y"``) or a duration.

    A range of two durations (``"P30Y/P40Y"``) or an open range (``"P90Y/"``) is also accepted, as
    NWB allows.

    Examples
    --------
    >>> iso_age(34), iso_age("34"), iso_age(34.5), iso_age("p2y6m"), iso_age("P30Y/P40Y"), iso_age("P90Y/")
    ('P34Y', 'P34Y', 'P34.5Y', 'P2Y6M', 'P30Y/P40Y', 'P90Y/')
    """
    if isinstance(age, bool):
        _bad_age(age, file)
    if isinstance(age, int | float):
        if not (age >= 0 and age < 200):
            _bad_age(age, file)
        years = int(age) if float(age).is_integer() else round(float(age), 3)
        return f"P{years}Y"
    if isinstance(age, str) and _YEARS.match(age.strip()):
        return iso_age(float(age), file=file)
    if isinstance(age, str):
        text = age.strip().upper()
        lower, is_range, upper = text.partition("/")
        if _ISO_DURATION.match(lower) and (not is_range or not upper or _ISO_DURATION.match(upper)):
            return text
    _bad_age(age, file)


def _bad_age(age: Any, file: str | None) -> NoReturn:
    raise ConversionError(
        f"the subject's age {age!r} is not a number of years or an ISO 8601 duration",
        file=file,
        field="subject.age",
        fix='give the age in years (34) or as an ISO 8601 duration ("P34Y", "P2Y6M")',
    )


def cap_age(age: str) -> str:
    """Return an ISO 8601 age with every bound of ``AGE_CAP_YEARS`` or more replaced by an open range.

    Examples
    --------
    >>> cap_age("P34Y"), cap_age("P93Y"), cap_age("P85Y/P95Y"), cap_age("P1200M")
    ('P34Y', 'P90Y/', 'P85Y/', 'P90Y/')
    """
    lower, is_range, upper = age.partition("/")
    if _years(lower) >= AGE_CAP_YEARS:
        return f"P{AGE_CAP_YEARS}Y/"
    if is_range and upper and _years(upper) >= AGE_CAP_YEARS:
        return f"{lower}/"
    return age


def _years(duration: str) -> float:
    years, months, weeks, days = (float(part or 0) for part in _ISO_DURATION.match(duration).groups()[:4])
    return years + months / 12 + (7 * weeks + days) / 365.25


def deidentify_subject(
    subject: dict[str, Any], session_start_time: dt.datetime, *, file: str | None = None
) -> dict[str, Any]:
    """Return a copy of ``subject`` without name or date of birth and with an ISO 8601 age (capped).

    When only ``date_of_birth`` is given, the age in whole years at ``session_start_time`` (the
    true, unshifted date) is written instead of it.
    """
    kept = {key: value for key, value in subject.items() if key not in IDENTIFYING_SUBJECT_FIELDS and value is not None}
    birth = subject.get("date_of_birth")
    if kept.get("age") is None and birth is not None:
        kept["age"] = iso_age(_years_between(birth, session_start_time), file=file)
    if kept.get("age") is not None:
        kept["age"] = cap_age(iso_age(kept["age"], file=file))
    return kept


def _years_between(birth: dt.date | dt.datetime, when: dt.datetime) -> int:
    birth_date = birth.date() if isinstance(birth, dt.datetime) else birth
    today = when.date()
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def shift_date(when: dt.datetime, days: int) -> dt.datetime:
    """Return ``when`` moved by a whole number of ``days`` (time of day and time zone kept)."""
    return when + dt.timedelta(days=int(days))


def check_shift(days: Any) -> int:
    """Return ``days`` as an int, or raise ConversionError if it is not a whole number of days."""
    if isinstance(days, bool) or not isinstance(days, int | float) or not float(days).is_integer():
        raise ConversionError(
            f"the date shift {days!r} is not a whole number of days",
            field="date_shift_days",
            fix=f"pass an integer such as {DEFAULT_DATE_SHIFT_DAYS}",
        )
    return int(days)


def deidentification_note(days: int) -> str:
    """The sentence written to NWB ``notes`` that records what de-identification did."""
    return (
        "De-identified by b2m_neuro: subject name and date of birth removed, age written as an "
        f"ISO 8601 duration, session_start_time and timestamps_reference_time shifted by "
        f"date_shift_days={days} (add {-days} days to recover the true dates)."
    )


def read_date_shift(notes: str | None) -> int | None:
    """Return the date shift recorded by :func:`deidentification_note` in ``notes``, or None."""
    match = _NOTE.search(notes or "")
    return None if match is None else int(match.group(1))
