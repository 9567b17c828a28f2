"""``Filter``: keep the items whose field meets every given condition."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from typing import Any

from ..core import Transform
from .extract import lookup

logger = logging.getLogger(__name__)

Check = Callable[[Any], bool]


class Filter(Transform):
    """Keep items whose ``field`` (a key or dotted path) meets all the conditions given.

    - ``equals`` / ``not_equals``: compared with ``==`` / ``!=``.
    - ``contains``: substring of a string value, or member of a list/dict value.
    - ``regex``: ``re.search`` over the value as a string.
    - ``min`` / ``max``: inclusive bounds; numeric text such as ``"12.50"`` counts
      as a number when the bound is one.
    - ``exists``: True keeps items whose field is present and not None; False keeps
      those where it is missing or None.

    A missing field (or None) fails every condition except ``exists=False`` and
    ``not_equals``. ``None`` means "not given", so test for null with ``exists``.
    """

    blocking = False

    def __init__(
        self,
        field: str,
        equals: Any = None,
        not_equals: Any = None,
        contains: Any = None,
        regex: str | None = None,
        min: Any = None,
        max: Any = None,
        exists: bool | None = None,
    ) -> None:
        self.field = field
        self._checks: list[Check] = []
        if exists is not None:
            self._checks.append(lambda v: (v is not None) == exists)
        if equals is not None:
            self._checks.append(lambda v: v is not None and bool(v == equals))
        if not_equals is not None:
            self._checks.append(lambda v: bool(v != not_equals))
        if contains is not None:
            self._checks.append(lambda v: _contains(v, contains))
        if regex is not None:
            pattern = re.compile(regex)
            self._checks.append(lambda v: v is not None and pattern.search(str(v)) is not None)
        if min is not None:
            low = min
            self._checks.append(lambda v: _compare(v, low, lambda a, b: a >= b))
        if max is not None:
            high = max
            self._checks.append(lambda v: _compare(v, high, lambda a, b: a <= b))
        if not self._checks:
            raise ValueError(f"Filter on {field!r} needs at least one condition")

    def process(self, item: Any) -> Any | None:
        value = lookup(item, self.field)
        for check in self._checks:
            if not check(value):
                return None
        return item


def _contains(value: Any, needle: Any) -> bool:
    if isinstance(value, str):
        return str(needle) in value
    if isinstance(value, Collection):
        return needle in value
    return False


def _compare(value: Any, bound: Any, ok: Callable[[Any, Any], bool]) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(bound, int | float) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    try:
        return ok(value, bound)
    except TypeError:
        return False
