"""Reading request input strictly: JSON bodies and query strings, every problem listed.

Type and shape are checked here (the OpenAPI document states the same rules); what a
value means (a cron expression, a time zone) is judged by the scheduler itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .problems import ApiProblem, FieldError, invalid

JSON_TYPES = ("application/json",)
_LEAP_SECOND = re.compile(r"(T\d\d:\d\d):60")
"""RFC 3339 allows second 60; Python does not: read it as :59."""


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (415 for another media type, 400 if it does not parse)."""
    if request.content_type not in JSON_TYPES and not request.content_type.endswith("+json"):
        raise ApiProblem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send the body as application/json, not {request.content_type or 'nothing'}",
        )
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ApiProblem(
            400, "malformed-json", "Malformed JSON", f"the body is not valid JSON: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise invalid([FieldError("body", "must be a JSON object")])
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Fields:
    """Collects the errors of one object's fields; ``prefix`` names nested objects."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.errors: list[FieldError] = []

    def where(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, message: str) -> None:
        self.errors.append(FieldError(self.where(key), message))

    def only(self, allowed: Collection[str]) -> None:
        """Unknown keys are errors, all of them listed."""
        for key in sorted(set(self.data) - set(allowed)):
            self.fail(key, f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def string(
        self, key: str, *, required: bool = False, max_length: int = 256, pattern: Any = None
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required or key in self.data:
                self.fail(key, "is required" if key not in self.data else "must be a string")
            return None
        if not isinstance(value, str):
            self.fail(key, "must be a string")
            return None
        if not value or len(value) > max_length:
            self.fail(key, f"must be 1 to {max_length} characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"must match {pattern.pattern}")
            return None
        return value

    def choice(self, key: str, options: Collection[str]) -> str | None:
        value = self.data.get(key)
        if key not in self.data:
            return None
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}")
            return None
        return str(value)

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if key not in self.data:
            return None
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
            return None
        return value

    def number(
        self,
        key: str,
        *,
        minimum: float = 0,
        maximum: float,
        exclusive: bool = False,
        nullable: bool = False,
        integer: bool = False,
    ) -> float | None:
        """A JSON number within bounds (``exclusive``: strictly above ``minimum``)."""
        value = self.data.get(key)
        if key not in self.data or (value is None and nullable):
            return None
        kinds = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            self.fail(key, "must be a whole number" if integer else "must be a number")
            return None
        low = value <= minimum if exclusive else value < minimum
        if low or value > maximum:
            bound = f"above {minimum:g}" if exclusive else f"at least {minimum:g}"
            self.fail(key, f"must be {bound} and at most {maximum:g}")
            return None
        return value

    def mapping(self, key: str) -> Fields | None:
        value = self.data.get(key)
        if key not in self.data:
            return None
        if not isinstance(value, dict):
            self.fail(key, "must be an object")
            return None
        return Fields(value, prefix=f"{self.where(key)}.")

    def absorb(self, nested: Fields | None) -> None:
        if nested is not None:
            self.errors.extend(nested.errors)


class Query:
    """A request's query string: unknown and repeated parameters are errors."""

    def __init__(self, request: web.Request, allowed: Collection[str]) -> None:
        self.values: dict[str, str] = {}
        self.errors: list[FieldError] = []
        for key in sorted(set(request.query.keys())):
            values = request.query.getall(key)
            if key not in allowed:
                self.fail(key, f"unknown parameter (allowed: {', '.join(sorted(allowed))})")
            elif len(values) > 1:
                self.fail(key, "give it once")
            else:
                self.values[key] = values[0]

    def fail(self, key: str, message: str) -> None:
        self.errors.append(FieldError(f"query.{key}", message))

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        raw = self.values.get(key)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            self.fail(key, f"must be a whole number from {low} to {high}")
            return default
        return int(raw)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        raw = self.values.get(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not raw.isascii() or not low <= value <= high:
            self.fail(key, f"must be a number from {low:g} to {high:g}")
            return default
        return value

    def text(self, key: str, max_length: int = 128) -> str | None:
        raw = self.values.get(key)
        if raw is not None and not 1 <= len(raw) <= max_length:
            self.fail(key, f"must be 1 to {max_length} characters")
            return None
        return raw

    def choice(self, key: str, options: Collection[str]) -> str | None:
        raw = self.values.get(key)
        if raw is not None and raw not in options:
            self.fail(key, f"must be one of {', '.join(options)}")
            return None
        return raw

    def moment(self, key: str) -> datetime | None:
        """An ISO 8601 date-time with a UTC offset (``2025-01-31T08:00:00Z``)."""
        raw = self.values.get(key)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(_LEAP_SECOND.sub(r"\1:59", raw.upper()))
        except ValueError:
            self.fail(key, "must be an ISO 8601 date-time, e.g. 2025-01-31T08:00:00Z")
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail(key, "needs a UTC offset, e.g. 2025-01-31T08:00:00Z or +01:00")
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            self.fail(key, "is out of range")
            return None

    def check(self) -> None:
        """Raise 422 listing every problem found so far."""
        if self.errors:
            raise invalid(self.errors)
