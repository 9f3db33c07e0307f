"""De-identification helpers: ISO 8601 ages, the 90-year cap, date shifts recorded in notes."""

from __future__ import annotations

import datetime as dt

import pytest

from b2m_neuro.convert.deidentify import (
    DEFAULT_DATE_SHIFT_DAYS,
    cap_age,
    check_shift,
    deidentification_note,
    deidentify_subject,
    iso_age,
    read_date_shift,
    shift_date,
)
from b2m_neuro.errors import ConversionError

WHEN = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("given, expected", [
    (34, "P34Y"), (34.0, "P34Y"), (0.5, "P0.5Y"), ("34", "P34Y"), (" p34y ", "P34Y"), ("P2Y6M", "P2Y6M"),
    ("P23W", "P23W"), ("P1DT12H", "P1DT12H"), ("P30Y/P40Y", "P30Y/P40Y"), ("P90Y/", "P90Y/"),
])
def test_iso_age_accepts(given, expected):
    assert iso_age(given) == expected


@pytest.mark.parametrize("given", [-1, 250, True, "", "P", "PT", "P1YT", "34 years", "/P40Y", "P3Y/P4Y/", None, [34]])
def test_iso_age_rejects(given):
    with pytest.raises(ConversionError, match="not a number of years or an ISO 8601 duration") as caught:
        iso_age(given, file="x.nwb")
    assert caught.value.field == "subject.age" and caught.value.file == "x.nwb"


@pytest.mark.parametrize("given, expected", [
    ("P89Y", "P89Y"), ("P90Y", "P90Y/"), ("P1100M", "P90Y/"), ("P80Y/P95Y", "P80Y/"), ("P95Y/", "P90Y/"),
])
def test_cap_age(given, expected):
    assert cap_age(given) == expected


def test_deidentify_subject_drops_name_and_birth_date():
    subject = {"subject_id": "P01", "name": "Jane Doe", "date_of_birth": dt.date(1990, 6, 2), "sex": "F",
               "species": "Homo sapiens", "weight": None}
    kept = deidentify_subject(subject, WHEN)
    # born 2 June 1990: still 33 on 1 May 2024; the original dict is untouched
    assert kept == {"subject_id": "P01", "sex": "F", "species": "Homo sapiens", "age": "P33Y"}
    assert subject["name"] == "Jane Doe"
    assert deidentify_subject({"subject_id": "P01", "age": "P45Y", "date_of_birth": dt.date(1900, 1, 1)}, WHEN) == {
        "subject_id": "P01", "age": "P45Y"}


def test_date_shift_round_trip_through_the_note():
    note = deidentification_note(-35)
    assert read_date_shift(note) == -35 and "add 35 days" in note
    assert read_date_shift("no note here") is None and read_date_shift(None) is None
    shifted = shift_date(WHEN, DEFAULT_DATE_SHIFT_DAYS)
    assert (WHEN - shifted).days == -DEFAULT_DATE_SHIFT_DAYS and shifted.weekday() == WHEN.weekday()
    assert shifted.tzinfo is WHEN.tzinfo and shifted.time() == WHEN.time()


@pytest.mark.parametrize("days", [1.5, "7", True, None])
def test_check_shift_rejects(days):
    with pytest.raises(ConversionError, match="whole number of days"):
        check_shift(days)
    assert check_shift(-7.0) == -7
