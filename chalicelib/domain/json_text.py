"""Strict parsing of JSON text (request bodies): no NaN or Infinity, bounded nesting and number sizes."""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ValidationError

# JSON a body may hold: nesting (objects and arrays) and the length of a number as written.
MAX_JSON_DEPTH = 32
MAX_INTEGER_DIGITS = 20  # a 64-bit integer, signed or not, fits
MAX_NUMBER_CHARS = 40

UNPARSABLE = "Failed to enqueue task because JSON body could not be parsed."

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deeply objects and arrays nest in a JSON text, counted without parsing it (the
    parser itself recurses, and fails past about a thousand levels)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValidationError(f"body holds {name}, which is not a JSON number; send a finite number.", field="body")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValidationError(f"body holds an integer of {len(text.lstrip('-'))} digits; at most "
                              f"{MAX_INTEGER_DIGITS} are accepted.", field="body")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if len(text) > MAX_NUMBER_CHARS or not math.isfinite(value):
        raise ValidationError(f"body holds the number {text[:MAX_NUMBER_CHARS]}...; numbers must be finite and at "
                              f"most {MAX_NUMBER_CHARS} characters long.", field="body")
    return value


def parse_json(text: str, field: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict JSON: no NaN or Infinity, bounded nesting and number sizes. ValueError when it
    does not parse; ValidationError when it breaks a bound."""
    depth = json_depth(text)
    if depth > max_depth:
        raise ValidationError(f"{field} nests objects and arrays {depth} deep; at most {max_depth} levels are "
                              "accepted.", field=field)
    return json.loads(text, parse_constant=_refuse_constant, parse_int=_integer, parse_float=_float)


def parse_json_object(body: bytes | str | None) -> dict[str, Any]:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
        data = parse_json(text) if text else None
    except ValueError:  # not JSON, or not UTF-8 (a ValidationError of a bound goes through)
        data = None
    if not isinstance(data, dict):
        raise ValidationError(UNPARSABLE, field="body")
    return data
