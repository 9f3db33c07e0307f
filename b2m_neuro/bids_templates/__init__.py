"""JSON / TSV / Markdown templates for raw BIDS datasets and for the b2m_neuro derivative.

Read them with ``importlib.resources.files("b2m_neuro.bids_templates") / NAME``.
"""
