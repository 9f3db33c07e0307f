"""A reachability check with retries, before a client that retries for minutes is handed a server."""

from __future__ import annotations

import time

from b2m_neuro.errors import SourceError


def check_reachable(url: str, *, what: str, retries: int, backoff: float = 0.5) -> None:
    """GET ``url`` up to ``retries`` times (waits of ``backoff * 2**k`` s); SourceError naming the
    server and the attempt count if no answer (any HTTP status) came back."""
    import requests

    last: Exception | None = None
    for attempt in range(retries):
        try:
            requests.get(url, timeout=10)
            return
        except requests.RequestException as error:
            last = error
            if attempt + 1 < retries:
                time.sleep(backoff * 2**attempt)
    raise SourceError(
        f"cannot reach the {what} after {retries} attempts ({type(last).__name__}: {last})",
        file=url, field="server", fix="check the network connection and the server address, then fetch again",
    )
