"""The ``b2m-neuro`` command line.

Each stage adds its subcommands in a module of this package that defines ``register(cli)``, where
``cli`` is a :class:`Registrar`; :func:`main` discovers those modules. Command functions import the
heavy libraries they need inside their bodies, so ``b2m-neuro --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from b2m_neuro._version import __version__
from b2m_neuro.errors import B2MError


class Registrar:
    """Adds commands (``b2m-neuro NAME``) and grouped commands (``b2m-neuro GROUP NAME``)."""

    def __init__(self, subparsers: argparse._SubParsersAction) -> None:
        self._subparsers = subparsers
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def command(self, name: str, *, help: str, group: str | None = None) -> argparse.ArgumentParser:
        """Return a new parser for ``name``; set its ``run`` default to a function of ``args``."""
        subparsers = self._subparsers if group is None else self._group(group)
        return subparsers.add_parser(name, help=help, description=help)

    def _group(self, group: str) -> argparse._SubParsersAction:
        if group not in self._groups:
            parser = self._subparsers.add_parser(group, help=f"{group} subcommands", description=f"{group} subcommands")
            self._groups[group] = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        return self._groups[group]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2m-neuro",
        description="Brain2Model learning: use human brain recordings as teachers for artificial networks.",
    )
    parser.add_argument("--version", action="version", version=f"b2m-neuro {__version__}")
    registrar = Registrar(parser.add_subparsers(dest="command", metavar="COMMAND"))
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}").register(registrar)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a B2MError, printed without traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        args.run(args)
    except B2MError as error:
        print(f"b2m-neuro {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
