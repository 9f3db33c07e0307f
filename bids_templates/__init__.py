"""JSON / TSV / Markdown templates for raw BIDS datasets and for the b2m_neuro derivative.

Placeholders are ``$name`` fields for :class:`string.Template`. The folder sits at the top of the
repository and is installed as the package ``b2m_neuro.bids_templates`` (``package-dir`` in
``pyproject.toml``), so the code reads the templates the same way from a checkout and from a wheel.
"""

from importlib import resources


def read_template(name: str) -> str:
    """Return the text of the template file ``name`` of this folder."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
