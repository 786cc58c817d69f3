"""Request bodies checked by pydantic models, refused in Particle's shape.

The Particle clients send JSON or urlencoded forms to the same routes (auth.py
``body_params`` reads both into a dict); the models say what each field may be.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cyan.api.errors import BadRequest

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], params: dict[str, Any]) -> M:
    """``params`` as ``model``; the first refusal as a 400 in Particle's shape."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        message = (
            str(cause)
            if cause is not None
            else f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
        )
        raise BadRequest(message) from None
