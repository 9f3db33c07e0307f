import subprocess
import sys

import b2m_neuro

HEAVY = ("torch", "cebra", "mne", "pynwb", "dandi")


def test_import_is_light():
    code = "import sys, b2m_neuro; print(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_resolves():
    for name in b2m_neuro.__all__:
        assert getattr(b2m_neuro, name) is not None, name


def test_cli_version_and_help():
    version = subprocess.run([sys.executable, "-m", "b2m_neuro", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"b2m-neuro {b2m_neuro.__version__}"
    helptext = subprocess.run([sys.executable, "-m", "b2m_neuro", "--help"], capture_output=True, text=True)
    assert helptext.returncode == 0 and "usage: b2m-neuro" in helptext.stdout
