"""What the operator's HTTP clients say about addresses and failed requests.

Shared so that Prometheus queries, HTTP probes, analysis webhooks and the webhook
router describe the same failure in the same words. Messages end up in ``status.analysis.results`` and in Events,
which many people can read, so URLs are cut to scheme, host, port and path
(userinfo and query strings can hold credentials) and quoted bodies have any
secret blanked out.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

import aiohttp

QUOTE_LIMIT = 200


def safe_url(url: str) -> str:
    """``url`` without userinfo, query or fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def problem(exc: BaseException, *, timeout: float) -> str:
    """A failed request in a few words: no answer in time, cannot connect (why), or the error itself."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def untrusted_certificate(exc: aiohttp.ClientConnectorCertificateError) -> str:
    return (f"the server's TLS certificate is not trusted ({exc.certificate_error}); give it a certificate from a "
            "trusted CA, or set insecureSkipTLSVerify: true for a test setup")


def quote(text: str, *, secrets: Iterable[str] = ()) -> str:
    """The first non-empty line of a body, shortened, with every secret replaced by ``<redacted>``."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    for secret in secrets:
        if secret:
            line = line.replace(secret, "<redacted>")
    if not line:
        return "(empty body)"
    return line[:QUOTE_LIMIT] + ("..." if len(line) > QUOTE_LIMIT else "")
