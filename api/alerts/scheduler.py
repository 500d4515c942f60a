"""When the evaluator runs: every N seconds inside ``tokentrail serve``, or once from cron.

Only one evaluator may run per store, or two would both notify a change. In
embedded mode ``serve`` is the only process, so it evaluates by default; with
a ClickHouse server ``serve`` usually runs as several replicas, so there it
evaluates only when an interval is asked for, and a single cron job runs
``tokentrail alerts evaluate`` instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from tokentrail.api.alerts.deliver import Deliverer
from tokentrail.api.alerts.evaluate import PassReport, evaluate
from tokentrail.schema.store import Store

log = logging.getLogger("tokentrail.alerts")

PUBLIC_URL_ENV = "TOKENTRAIL_PUBLIC_URL"
DEFAULT_INTERVAL_S = 60.0


class AlertScheduler:
    """A daemon thread running ``run_pass(clock())`` now and then every ``interval_s``.

    A failed pass is logged and the next one runs on time: the thread outlives
    any exception, since a dead evaluator would fail silently.
    """

    def __init__(
        self,
        run_pass: Callable[[int], object],
        interval_s: float,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._run_pass = run_pass
        self._interval_s = interval_s
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tokentrail-alerts", daemon=True)

    def start(self) -> AlertScheduler:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the pass in progress, waiting at most ``timeout_s`` for it."""
        self._stopping.set()
        self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._run_pass(self._clock())
            except Exception:
                log.exception("alert evaluation pass failed; next in %s s", self._interval_s)
            self._stopping.wait(self._interval_s)


def _link_base(link_base: str | None) -> str:
    return os.environ.get(PUBLIC_URL_ENV, "") if link_base is None else link_base


def run_once(
    store: Store,
    now_ns: int | None = None,
    *,
    project_id: str | None = None,
    deliverer: Deliverer | None = None,
    link_base: str | None = None,
) -> PassReport:
    """One pass, logging what it did; what both the scheduler and the cron command run."""
    report = evaluate(
        store,
        time.time_ns() if now_ns is None else now_ns,
        project_id=project_id,
        deliverer=deliverer,
        link_base=_link_base(link_base),
    )
    if report.events or report.failed_rules:
        log.info("alerts: %s", report.summary())
    return report


def start_alerts(
    store: Store,
    interval_s: float | None,
    *,
    clock: Callable[[], int] = time.time_ns,
    deliverer: Deliverer | None = None,
    link_base: str | None = None,
) -> AlertScheduler | None:
    """Start evaluating every ``interval_s`` seconds; ``None`` picks the store's default,
    0 (or less) disables. Returns the running scheduler, or ``None`` when disabled."""
    if interval_s is None:
        interval_s = DEFAULT_INTERVAL_S if store.embedded else 0.0
    if interval_s <= 0:
        log.info("alert evaluation is off in this process (interval %s)", interval_s)
        return None
    base = _link_base(link_base)

    def run_pass(now_ns: int) -> None:
        run_once(store, now_ns, deliverer=deliverer, link_base=base)

    log.info("evaluating alert rules every %s s", interval_s)
    return AlertScheduler(run_pass, interval_s, clock).start()
