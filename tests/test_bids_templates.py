"""bids_templates/ lives at the top level and is installed as b2m_neuro.bids_templates."""

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_namespace_packages

import b2m_neuro.bids_templates as templates

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p.name for p in (ROOT / "bids_templates").iterdir() if p.suffix in (".json", ".md"))


def test_the_package_reads_its_templates_from_the_top_level_folder():
    assert Path(templates.__file__).parent == ROOT / "bids_templates"
    assert not (ROOT / "b2m_neuro" / "bids_templates").exists()  # a stale folder would shadow the mapping
    assert len(TEMPLATES) == 7
    for name in TEMPLATES:
        text = templates.read_template(name)
        assert text == (ROOT / "bids_templates" / name).read_text(encoding="utf-8")
        if name.endswith(".json"):
            json.loads(text)


def test_pyproject_lists_every_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_namespace_packages(where=str(ROOT), include=["b2m_neuro*"]))
    assert set(setuptools["packages"]) == found | {"b2m_neuro.bids_templates"}
    assert setuptools["package-dir"] == {"b2m_neuro.bids_templates": "bids_templates"}


def test_built_wheel_ships_the_templates_inside_the_package(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    for name in ("b2m_neuro", "bids_templates"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path, timeout=300)
    (wheel,) = tmp_path.glob("b2m_neuro-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {f"b2m_neuro/bids_templates/{name}" for name in TEMPLATES} <= names
    assert not any(name.startswith("bids_templates/") for name in names)
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', '')]; "
        "import b2m_neuro.bids_templates as t; print(t.__file__); t.read_template('raw_README.md')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path / "site")})
    assert out.stdout.strip() == str(tmp_path / "site/b2m_neuro/bids_templates/__init__.py")
