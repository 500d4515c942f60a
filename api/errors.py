"""422 answers in the same shape as FastAPI's own validation errors.

Checks that pydantic cannot express (start before end, a cursor's contents) are
raised through here so every 422 names its field the same way.
"""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi.exceptions import RequestValidationError


def invalid(location: tuple[str, ...], message: str, value: Any = None) -> NoReturn:
    """Raise a 422 for the field at ``location``, e.g. ``("query", "start")``."""
    raise RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": value}]
    )
