"""Carrying the caller's context into threads, which Python starts empty.

A ``threading.Thread`` begins with a fresh ``contextvars`` context (before
Python 3.14), so a thread started inside ``tokentrail.feature(...)`` would lose
the attribution, the baggage and the OTel parent span. `init()` installs two
small patches (``init(propagate_threads=False)`` leaves threading alone):

- ``threading.Thread.start`` copies the starting thread's context and runs the
  thread's ``run`` inside that copy. Subclasses and ``threading.Timer`` are
  covered (the copy wraps the instance's own ``run``).
- ``concurrent.futures.ThreadPoolExecutor.submit`` (and so ``map``,
  ``loop.run_in_executor``) runs each task in a copy of the *submitter's*
  context. Worker threads are started from an empty context, so a worker
  created during one scope never leaks that scope into later tasks.

Carried: every context variable as it was when ``start()`` / ``submit()`` ran,
which includes tokentrail's attribution and the OTel current span and baggage
(and any other library's context variables). Changes a thread makes stay in
its copy. Not carried: threads started before the scope was entered (even if
they run work for it later, e.g. a long-lived worker fed through a queue),
threads from ``_thread.start_new_thread`` or C extensions, thread pools that
do not go through ``ThreadPoolExecutor.submit``, and other processes
(``multiprocessing``, ``ProcessPoolExecutor``): send those the attribution
explicitly, or rely on W3C baggage for requests between services.

A long-lived thread started inside a scope (a background worker spawned while
handling a request) keeps that scope, and that request's span as its parent,
for its whole life: start such threads outside any scope, or from an empty
context with ``contextvars.Context().run(thread.start)``.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tokentrail._runtime import logger

# What install() replaced, read at install time so an earlier patch by someone
# else (another APM agent) stays in the chain.
_original_start = threading.Thread.start
_original_submit = ThreadPoolExecutor.submit
_reported = False


def _report() -> None:
    global _reported
    if not _reported:
        _reported = True
        logger.warning(
            "tokentrail: could not carry context into a thread; it runs without "
            "attribution (logged once)",
            exc_info=True,
        )


def _start(self: threading.Thread) -> None:
    try:
        context = contextvars.copy_context()
        # An instance attribute shadows the class's run, a subclass's override included.
        self.run = functools.partial(context.run, self.run)  # type: ignore[method-assign]
    except Exception:
        _report()
    _original_start(self)


def _submit(
    self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Future[Any]:
    try:
        task = functools.partial(contextvars.copy_context().run, fn)
    except Exception:
        _report()
        return _original_submit(self, fn, *args, **kwargs)
    # submit() may start a worker thread: start it from an empty context, so
    # the worker does not keep this caller's context for the tasks after it.
    return contextvars.Context().run(_original_submit, self, task, *args, **kwargs)


def install() -> None:
    """Patch thread start and executor submit (idempotent)."""
    global _original_start, _original_submit
    if threading.Thread.start is not _start:
        _original_start = threading.Thread.start
        threading.Thread.start = _start  # type: ignore[method-assign]
    if ThreadPoolExecutor.submit is not _submit:
        _original_submit = ThreadPoolExecutor.submit
        ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign, assignment]


def uninstall() -> None:
    """Undo `install`, leaving alone a patch someone else installed after ours."""
    if threading.Thread.start is _start:
        threading.Thread.start = _original_start  # type: ignore[method-assign]
    if ThreadPoolExecutor.submit is _submit:
        ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
