"""Keeping instrumentation faults away from the host application."""

from __future__ import annotations

from tokentrail._runtime import logger


class Faults:
    """Reports faults in one wrapper's own code: the first as a warning, the rest at debug.

    A broken wrapper fails the same way on every call; one warning with the
    traceback is enough to fix it, and a warning per request would flood logs.
    Call `report()` only from inside an `except` block.
    """

    __slots__ = ("_reported", "where")

    def __init__(self, where: str) -> None:
        self.where = where
        self._reported = False

    def report(self) -> None:
        if self._reported:
            logger.debug("tokentrail: %s instrumentation failed again", self.where, exc_info=True)
            return
        self._reported = True
        logger.warning(
            "tokentrail: %s instrumentation failed; the call itself is unaffected, but its span "
            "may lack details (logged once)",
            self.where,
            exc_info=True,
        )
