"""``JsonExtract``: pick fields out of JSON documents by dotted path."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..core import Transform

logger = logging.getLogger(__name__)


def lookup(value: Any, path: str) -> Any:
    """Follow a dotted ``path`` (``"a.b.0.c"``) into mappings and lists; None if missing.

    Digits index lists (negative too); an empty path is ``value`` itself. A key that
    exists as a whole (dots included) in a mapping wins over the dotted reading.
    """
    if not path:
        return value
    if isinstance(value, Mapping) and path in value:
        return value[path]
    current = value
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, Sequence) and not isinstance(current, str | bytes):
            try:
                current = current[int(part)]
            except (ValueError, IndexError):
                return None
        else:
            return None
        if current is None:
            return None
    return current


class JsonExtract(Transform):
    """Map dotted paths of each document to output keys: ``{"title": "data.0.name"}``.

    The document is the item itself or, with ``from_key``, the item's field of that
    name (JSON text is parsed first, e.g. ``from_key="text"`` after ``HttpFetch``).
    A JSON array at the root fans out: one output item per element.
    """

    blocking = False

    def __init__(self, fields: Mapping[str, str], from_key: str | None = None) -> None:
        if not fields:
            raise ValueError("JsonExtract needs at least one field")
        self.fields = dict(fields)
        self.from_key = from_key

    def process(self, item: Any) -> Iterator[dict[str, Any]]:
        document = self._document(item)
        for element in document if isinstance(document, list) else (document,):
            yield {name: lookup(element, path) for name, path in self.fields.items()}

    def _document(self, item: Any) -> Any:
        if self.from_key is None:
            return item
        if not isinstance(item, Mapping):
            raise TypeError(
                f"JsonExtract(from_key={self.from_key!r}) needs dict items, "
                f"got {type(item).__name__}"
            )
        value = item.get(self.from_key)
        if isinstance(value, str | bytes | bytearray):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"field {self.from_key!r} of {item.get('url', 'the item')} is not JSON: {exc}"
                ) from exc
        return value
