"""``b2m-neuro fetch``: a DANDI dandiset, an OpenNeuro dataset or a local folder into the cache."""

from __future__ import annotations

import argparse


def register(cli) -> None:
    fetch = cli.command("fetch", help="Fetch a public dataset (dandi:<id>[@<version>], openneuro:<id>[@<tag>]) "
                                      "into the cache and print where its files are")
    fetch.add_argument("source", help="dandi:000004[@0.220126.1852], openneuro:ds000117[@1.0.5] or a folder")
    fetch.add_argument("--include", action="append", default=None, metavar="GLOB",
                       help="path glob inside the dataset, repeatable (default: every file)")
    fetch.add_argument("--subject", default=None, help="only this BIDS subject (files without one are kept)")
    fetch.add_argument("--session", default=None, help="only this BIDS session")
    fetch.add_argument("--task", default=None, help="only this BIDS task")
    fetch.add_argument("--cache", default=None, help="cache folder (default $B2M_NEURO_CACHE or ~/.cache/b2m_neuro)")
    fetch.add_argument("--stream", action="store_true", help="DANDI: download nothing, print the URLs to stream")
    fetch.add_argument("--server", default=None,
                       help="DANDI instance name or API URL; OpenNeuro GraphQL API URL (default: the public ones)")
    fetch.add_argument("--s3-endpoint", default=None, help="OpenNeuro: S3 endpoint of the openneuro.org bucket")
    fetch.add_argument("--retries", type=int, default=3, help="attempts to reach the server (default 3)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(run=_fetch)


def _fetch(args: argparse.Namespace) -> None:
    from b2m_neuro.sources import fetch

    fetched = fetch(args.source, include=args.include, subject=args.subject, session=args.session, task=args.task,
                    cache=args.cache, stream=args.stream, server=args.server, s3_endpoint=args.s3_endpoint,
                    retries=args.retries, progress=not args.quiet)
    where = fetched.root if fetched.root is not None else "(streamed)"
    print(f"{fetched.source}: {len(fetched)} files in {where}")
    for file in fetched:
        print(f"  {file.path}  {file.size} bytes  {file.url if file.local is None else ''}".rstrip())
