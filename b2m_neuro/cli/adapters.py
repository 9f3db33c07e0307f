"""``b2m-neuro presets [NAME]``: list the shipped teacher specs, or print one as TOML."""

from __future__ import annotations

import argparse


def register(cli) -> None:
    parser = cli.command("presets", help="List the shipped teacher-spec presets, or show one as TOML")
    parser.add_argument("name", nargs="?", help="preset to print (omit to list all)")
    parser.set_defaults(run=_presets)


def _presets(args: argparse.Namespace) -> None:
    from b2m_neuro.adapters.spec import list_presets, preset_text

    if args.name:
        print(preset_text(args.name), end="")
        return
    presets = list_presets()
    width = max(map(len, presets))
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
