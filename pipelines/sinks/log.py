"""``LogSink``: log each item through the run's logger and pass it on."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ..core import Transform

logger = logging.getLogger(__name__)


class _Fields(dict[str, Any]):
    """Template values: the item's keys, ``item`` for the whole item, None if missing."""

    def __init__(self, item: Any) -> None:
        super().__init__(item if isinstance(item, Mapping) else {})
        self.item = item

    def __missing__(self, key: str) -> Any:
        return self.item if key == "item" else None


class LogSink(Transform):
    """Log every item at ``level``: ``template.format_map(item)`` or its JSON.

    Messages are cut to ``max_chars``. A template that does not fit an item (a bad
    format spec, say) falls back to the JSON, with one warning per run.
    """

    blocking = False

    def __init__(
        self, level: str | int = "INFO", template: str | None = None, max_chars: int = 500
    ) -> None:
        self.level = _level(level)
        self.template = template
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        self.max_chars = max_chars
        self._warned = False

    def process(self, item: Any) -> Any:
        context = getattr(self, "context", None)
        log = context.logger if context is not None else logger
        if log.isEnabledFor(self.level):
            log.log(self.level, "%s", self.render(item))
        return item

    def render(self, item: Any) -> str:
        """The message logged for ``item``."""
        text = None
        if self.template is not None:
            try:
                text = self.template.format_map(_Fields(item))
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                if not self._warned:
                    self._warned = True
                    logger.warning("LogSink template %r failed: %s", self.template, exc)
        if text is None:
            text = json.dumps(item, ensure_ascii=False, default=str)
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1] + "…"
        return text


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number
