"""Every tutorial runs top to bottom, at the small sizes it is written with, in a fresh folder."""

import runpy
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("[0-9]*.py"))


def test_tutorials_exist():
    assert TUTORIALS, "no tutorials found in tutorials/"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(path), run_name="__main__")
    assert any(tmp_path.iterdir()), f"{path.name} wrote nothing to its working folder"
