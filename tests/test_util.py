import hashlib

import pytest

from b2m_neuro._util.files import atomic_path, check_writable_target, digests, read_json_object, sha256
from b2m_neuro.errors import B2MError, DerivativeError


def test_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * 1000)
    assert sha256(path, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert digests(path, ("md5", "sha256"), chunk_size=7) == {"md5": hashlib.md5(b"abc" * 1000).hexdigest(),
                                                             "sha256": hashlib.sha256(b"abc" * 1000).hexdigest()}


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nwb"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_folder(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_check_writable_target(tmp_path):
    with pytest.raises(B2MError, match="output folder does not exist"):
        check_writable_target(tmp_path / "missing" / "a.nwb", overwrite=False)
    existing = tmp_path / "a.nwb"
    existing.write_text("x")
    with pytest.raises(B2MError, match="overwrite=True"):
        check_writable_target(existing, overwrite=False)
    assert check_writable_target(existing, overwrite=True) == existing


def test_read_json_object_names_the_file_for_text_that_is_not_a_json_object(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('\ufeff{"Name": "x"}', encoding="utf-8")  # a byte-order mark is accepted
    assert read_json_object(good, error=DerivativeError, fix="rewrite it") == {"Name": "x"}
    for name, text, message in (("broken.json", "{", "not valid JSON"), ("list.json", "[1]", "not hold a JSON object")):
        (tmp_path / name).write_text(text)
        with pytest.raises(DerivativeError, match=message) as error:
            read_json_object(tmp_path / name, error=DerivativeError, fix="rewrite it")
        assert name in str(error.value) and "rewrite it" in str(error.value)


def test_pre_stimulus_points_are_negative_times_or_the_first_half():
    import numpy as np

    from b2m_neuro._util.time_axis import pre_stimulus

    assert pre_stimulus(np.array([-1.0, -0.5, 0.0, 0.5]), 4).tolist() == [True, True, False, False]
    assert pre_stimulus(np.arange(5), 5).tolist() == [True, True, False, False, False]  # no negative time
    assert pre_stimulus(np.array(["a", "b"]), 2).tolist() == [True, False]  # not numeric
    assert pre_stimulus(None, 2).tolist() == [True, False]


def test_content_key_is_equal_exactly_for_equal_arrays():
    import numpy as np

    from b2m_neuro._util.arrays import content_key

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert content_key(a) == content_key(a.copy()) == content_key(np.asfortranarray(a))  # layout does not matter
    assert content_key(a[:, ::2]) == content_key(np.ascontiguousarray(a[:, ::2]))
    different = [a.astype(np.float64), a.reshape(4, 3), a + np.eye(3, 4, dtype=np.float32)]
    assert len({content_key(a), *map(content_key, different)}) == 4
