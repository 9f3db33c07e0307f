import pytest

from b2m_neuro import errors


def test_message_names_file_field_and_fix():
    err = errors.ConversionError("spike times are negative", file="a.nwb", field="spike_times[2]", fix="shift them")
    assert str(err) == "a.nwb: spike_times[2]: spike times are negative. Fix: shift them."
    assert (err.file, err.field, err.fix) == ("a.nwb", "spike_times[2]", "shift them")


def test_message_without_location():
    assert str(errors.B2MError("nothing to do.")) == "nothing to do."


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n != "B2MError"])
def test_every_stage_error_is_a_b2m_error(name):
    assert issubclass(getattr(errors, name), errors.B2MError)
