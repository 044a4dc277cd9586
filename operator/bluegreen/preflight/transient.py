"""Which failures of a scan are an API server's passing trouble rather than something to fix.

A scan that could not read is no evidence, so it may never let a Block policy
pass (see ``run``). But a blocked upgrade waits for a person, and an API server
that answered one 503 needs none: the same read a little later succeeds. So the
preflight tells the two apart by the client's own classes. An answer of 5xx or
429, or no answer at all (:class:`~bluegreen.kube.client.UnreachableError`:
refused, unreachable, timed out, TLS) is *transient*: the pass raises
:class:`ScanInterrupted`, the ScanPreflight action fails, and the reconcile
loop keeps the old status, shows ``RetryingAfterError`` and retries with
backoff until the server answers. Every other refusal (401, 403, a 404 of the
API itself, 422) and whatever is wrong with a source's content will not change
by waiting: those stay problems that block until a person acts.
"""

from __future__ import annotations

from bluegreen.kube.client import ApiError, UnreachableError

__all__ = ["ScanInterrupted", "is_transient"]


class ScanInterrupted(Exception):
    """A scan could not read an API server for now; the whole pass is to be retried, not judged."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is an API server failing for now (5xx, 429, no answer) rather than refusing."""
    if isinstance(error, UnreachableError):
        return True
    return isinstance(error, ApiError) and (error.status >= 500 or error.status == 429)
