"""``HtmlSelect``: one item per element matching a CSS selector, with chosen fields.

Field specs, relative to each matched element::

    "h2 a::text"   stripped text of the first match of "h2 a" (whitespace collapsed)
    "a@href"       attribute of the first match; href/src resolved against the page URL
    "::text"       text of the element itself
    "@href"        attribute of the element itself
    "span.price"   no suffix: text

A missing element or attribute gives None. Links found on a page that is not itself
a ``file:`` URL never resolve to ``file:`` URLs (None instead), so a fetched page
cannot steer a later ``HttpFetch`` to local files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import soupsieve
from bs4 import BeautifulSoup, Tag

from ..core import Transform
from .http import absolute_url

logger = logging.getLogger(__name__)

URL_ATTRIBUTES = frozenset({"href", "src"})
_ATTRIBUTE = re.compile(r"^(?P<css>.*?)\s*@(?P<attr>[A-Za-z_:][-A-Za-z0-9_:.]*)$", re.DOTALL)
_TEXT = "::text"


@dataclass(frozen=True, slots=True)
class _Field:
    """One parsed field spec: where (None: the element itself) and what to read."""

    css: Any  # a compiled soupsieve selector, or None
    attribute: str | None


def _parse_field(name: str, spec: str) -> _Field:
    text = spec.strip()
    attribute: str | None = None
    if text.endswith(_TEXT):
        css = text[: -len(_TEXT)].strip()
    elif (match := _ATTRIBUTE.match(text)) is not None:
        css, attribute = match["css"].strip(), match["attr"]
    else:
        css = text
    return _Field(_compile(css, f"field {name!r}") if css else None, attribute)


def _compile(css: str, what: str) -> Any:
    try:
        return soupsieve.compile(css)
    except soupsieve.SelectorSyntaxError as exc:
        raise ValueError(f"{what}: invalid CSS selector {css!r}: {exc}") from exc


class HtmlSelect(Transform):
    """Parse each page (``text``) and yield one dict per element matching ``selector``.

    Output: the ``fields`` by name, plus ``source_url`` (the page's ``base_url_key``).
    """

    blocking = True  # parsing is CPU work: keep it off the event loop

    def __init__(self, selector: str, fields: Mapping[str, str], base_url_key: str = "url") -> None:
        if not fields:
            raise ValueError("HtmlSelect needs at least one field")
        self.selector = selector
        self.fields = dict(fields)
        self.base_url_key = base_url_key
        self._selector = _compile(selector, "selector")
        self._fields = {name: _parse_field(name, spec) for name, spec in self.fields.items()}

    def process(self, item: Any) -> Iterator[dict[str, Any]]:
        if not isinstance(item, Mapping):
            raise TypeError(f"HtmlSelect needs dict items with 'text', got {type(item).__name__}")
        text = item.get("text")
        if not text:
            return
        page_url = item.get(self.base_url_key)
        page_url = absolute_url(page_url) if isinstance(page_url, str) else None
        soup = BeautifulSoup(text, "html.parser")
        try:
            base = _document_base(soup, page_url)
            rows = [self._row(element, base, page_url) for element in self._selector.select(soup)]
        finally:
            soup.decompose()
        yield from rows

    def _row(self, element: Tag, base: str | None, page_url: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, spec in self._fields.items():
            target = element if spec.css is None else spec.css.select_one(element)
            row[name] = None if target is None else _read(target, spec.attribute, base)
        row["source_url"] = page_url
        return row


def _document_base(soup: BeautifulSoup, page_url: str | None) -> str | None:
    """The URL links resolve against: ``<base href>`` when present, else the page URL."""
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        href = base_tag.get("href")
        if isinstance(href, str):
            return _resolve(page_url, href) if page_url else href
    return page_url


def _read(element: Tag, attribute: str | None, base: str | None) -> str | None:
    if attribute is None:
        return " ".join(element.get_text().split())
    value = element.get(attribute)
    if value is None:
        return None
    if not isinstance(value, str):  # multi-valued attributes such as class
        value = " ".join(value)
    if attribute.lower() in URL_ATTRIBUTES and base:
        return _resolve(base, value.strip())
    return value


def _resolve(base: str, link: str) -> str | None:
    resolved = urljoin(base, link)
    if urlsplit(resolved).scheme == "file" and urlsplit(base).scheme != "file":
        return None
    return resolved
