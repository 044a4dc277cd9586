"""The operator's log keeps what a person needs: kopf's success line of every watch-handler call is dropped."""

from __future__ import annotations

import logging

import kopf

from bluegreen import handlers


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_the_quieted_handlers_are_exactly_the_watch_handlers_kopf_runs() -> None:
    watching = {str(handler) for handler in kopf.get_default_registry()._watching.get_all_handlers()}
    assert watching == {f"Handler {name!r}" for name in handlers.WATCH_HANDLERS}


def test_only_their_success_lines_are_dropped() -> None:
    quiet = handlers.QuietWatchHandlers()
    assert not quiet.filter(record("Handler 'upgrade_changed' succeeded."))
    assert not quiet.filter(record("Handler 'kustomization_changed' succeeded."))
    assert quiet.filter(record("Daemon 'upgrade' succeeded."))
    assert quiet.filter(record("Handler 'cleanup' succeeded."))
    assert quiet.filter(record("Handler 'upgrade_changed' failed with an exception. Will retry.", logging.ERROR))
