"""422 answers in the same shape as FastAPI's own validation errors.

Checks that pydantic cannot express (start before end, a cursor's contents) are
raised through here so every 422 names its field the same way.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError


def invalid(location: tuple[str, ...], message: str, value: Any = None) -> NoReturn:
    """Raise a 422 for the field at ``location``, e.g. ``("query", "start")``."""
    raise RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": value}]
    )


async def validation_error_response(_: Request, exc: Exception) -> Response:
    """FastAPI's 422 body, rendered ASCII-safe.

    A rejected input is echoed back in the answer; JSON allows escaped lone
    surrogates (``"\\ud800"``) that UTF-8 cannot encode, which made the default
    handler fail with a 500 while reporting a client's mistake.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_response)
