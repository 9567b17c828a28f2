"""A Transform the end-to-end tests import from pipelines.yml (``allowed_modules``)."""

from __future__ import annotations

from typing import Any

from pipelines.core import Transform


class Fail(Transform):
    """Raises on every item, like a scraper meeting a page it does not know."""

    blocking = False

    def __init__(self, message: str = "the page changed") -> None:
        self.message = message

    def process(self, item: Any) -> Any:
        raise RuntimeError(self.message)
