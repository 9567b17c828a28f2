"""A bounded, strict YAML reader for configuration files.

Built on PyYAML's ``SafeLoader``: the text is composed into a node tree, which is then
turned into plain Python values (dict, list, str, int, float, bool, None, dates) by
one walk that also records the line of every key, and reports what PyYAML would
accept silently:

- duplicate keys (PyYAML keeps the last one);
- explicit tags other than the plain YAML types (``!!python/...`` above all);
- YAML 1.1 traps in unquoted scalars: ``12:30`` read as the number 750, ``0755`` read
  as octal, ``yes``/``no``/``on``/``off``/``y``/``n`` read as booleans.

Hard limits stop hostile or runaway input before anything big is built: the text size
(``MAX_BYTES``), nesting depth (``MAX_DEPTH``), alias uses (``MAX_ALIASES``) and values
counted with every alias expanded (``MAX_NODES``: an alias bomb fails here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, Problem

MAX_BYTES = 1024 * 1024
"""Largest accepted document, in UTF-8 bytes."""
MAX_DEPTH = 64
"""Deepest accepted nesting of mappings and lists."""
MAX_ALIASES = 100
"""Most alias uses (``*name``, merges included) in one document."""
MAX_NODES = 50_000
"""Most values in one document, counting every alias expansion."""

PathPart = str | int
KeyPath = tuple[PathPart, ...]
"""Mapping keys and list indexes from the document root, e.g. ``("pipelines", "news")``."""

FILE_PATH = "(file)"
"""The path given to problems about the document as a whole."""

_YAML = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML + "merge"
_BOOLEAN_WORDS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}
_OCTAL = re.compile(r"[-+]?0[0-7_]+")


class LineMap(dict[KeyPath, int]):
    """The 1-based line of each key (or list item) of a document, by key path."""

    def nearest(self, path: KeyPath) -> int | None:
        """Line of ``path``, or of its closest ancestor present in the document."""
        for end in range(len(path), -1, -1):
            line = self.get(path[:end])
            if line is not None:
                return line
        return None


@dataclass(frozen=True)
class YamlDocument:
    """A parsed document and the problems that did not stop parsing.

    When ``problems`` is not empty, ``data`` is only good for finding more problems:
    a value with a disallowed tag is None, and a YAML 1.1 trap keeps its text.
    """

    data: Any
    lines: LineMap
    problems: tuple[Problem, ...] = field(default=())


def format_path(path: KeyPath) -> str:
    """Render a key path: ``pipelines.news.chain[1].kwargs.selector``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def key_part(key: object) -> str:
    """The path part for a mapping key (non-string keys are shown as text)."""
    return key if isinstance(key, str) else str(key)


def check_size(size: int, *, source: str) -> None:
    """Raise ``ConfigError`` when a document of ``size`` bytes is over ``MAX_BYTES``."""
    if size > MAX_BYTES:
        message = f"file is {size:,} bytes, over the {MAX_BYTES:,}-byte limit for configuration"
        raise ConfigError([Problem(FILE_PATH, message, None, source)])


def load_yaml(text: str, *, source: str) -> tuple[Any, LineMap]:
    """Parse ``text`` into plain values and their lines; any problem raises ``ConfigError``."""
    document = parse_yaml(text, source=source)
    if document.problems:
        raise ConfigError(list(document.problems))
    return document.data, document.lines


def parse_yaml(text: str, *, source: str) -> YamlDocument:
    """Parse ``text``, returning soft problems instead of raising them.

    Problems that leave nothing usable (size, syntax, limits) still raise ``ConfigError``.
    """
    if len(text) > MAX_BYTES // 4:
        check_size(len(text.encode("utf-8", "surrogatepass")), source=source)
    try:
        root = _compose(text, source)
        if root is None:
            return YamlDocument(None, LineMap())
        _Measure().size(root)
    except _Fatal as exc:
        raise ConfigError([Problem(FILE_PATH, exc.message, exc.line, source)]) from None
    builder = _Builder(source)
    builder.lines[()] = _line(root.start_mark) or 0
    data = builder.build(root, ())
    return YamlDocument(data, builder.lines, tuple(builder.problems))


class _Fatal(Exception):
    """A hard limit was hit while composing or measuring: nothing more is read."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that stops composing at the node, alias and depth limits."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._composed = 0
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._composed += 1
        if self._composed > MAX_NODES:
            raise _Fatal(_TOO_MANY_VALUES, self._next_line())
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                message = f"more than {MAX_ALIASES} aliases (*name) in one document"
                raise _Fatal(message, self._next_line())
        if self._depth >= MAX_DEPTH:
            raise _Fatal(f"nested deeper than {MAX_DEPTH} levels", self._next_line())
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _next_line(self) -> int | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        return _line(event.start_mark)


def _compose(text: str, source: str) -> Node | None:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(exc, source)]) from None
    except yaml.YAMLError as exc:
        message = f"invalid YAML: {exc}".replace("\n", " ")
        raise ConfigError([Problem(FILE_PATH, message, None, source)]) from None
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.MarkedYAMLError, source: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = ": ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
    if "'\\t'" in what:
        what += " (indent with spaces: YAML does not allow tabs there)"
    if mark is None:
        return Problem(FILE_PATH, f"invalid YAML: {what}", None, source)
    message = f"invalid YAML: {what} (line {mark.line + 1}, column {mark.column + 1})"
    return Problem(FILE_PATH, message, mark.line + 1, source)


def _line(mark: yaml.Mark | None) -> int | None:
    return None if mark is None else mark.line + 1


_TOO_MANY_VALUES = (
    f"document holds more than {MAX_NODES:,} values (counting alias expansions); "
    "is it an alias bomb?"
)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


class _Measure:
    """Counts values with aliases expanded, without expanding anything.

    Each distinct node is sized once (an alias reuses its node's size); meeting a node
    still being sized is a recursive alias.
    """

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()

    def size(self, node: Node) -> int:
        key = id(node)
        if key in self.active:
            message = "an alias refers to a value that contains it (recursive alias)"
            raise _Fatal(message, _line(node.start_mark))
        if key in self.sizes:
            return self.sizes[key]
        self.active.add(key)
        total = 1 + sum(self.size(child) for child in _children(node))
        self.active.discard(key)
        if total > MAX_NODES:
            raise _Fatal(_TOO_MANY_VALUES, _line(node.start_mark))
        self.sizes[key] = total
        return total


def _display_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


_BAD_KEY = object()


class _Builder:
    """Turns a measured node tree into plain values, recording lines and problems.

    Aliased nodes are built afresh at each use (never shared); a problem inside one
    is reported once.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = LineMap()
        self.problems: list[Problem] = []
        self.reported: set[tuple[int, str]] = set()
        self.constructor = yaml.SafeLoader("")
        self.scalars: dict[str, Callable[[ScalarNode], Any]] = {
            _YAML + "null": self.constructor.construct_yaml_null,
            _YAML + "bool": self.constructor.construct_yaml_bool,
            _YAML + "int": self.constructor.construct_yaml_int,
            _YAML + "float": self.constructor.construct_yaml_float,
            _YAML + "str": self.constructor.construct_yaml_str,
            _YAML + "value": self.constructor.construct_yaml_str,  # a plain "="
            _YAML + "timestamp": self.constructor.construct_yaml_timestamp,
        }

    def problem(self, path: KeyPath, message: str, node: Node) -> None:
        if (id(node), message) in self.reported:
            return
        self.reported.add((id(node), message))
        line = _line(node.start_mark)
        self.problems.append(Problem(format_path(path), message, line, self.source))

    def bad_tag(self, path: KeyPath, node: Node) -> None:
        tag = _display_tag(node.tag)
        self.problem(path, f"tag {tag} is not allowed: this file takes plain values only", node)

    def build(self, node: Node, path: KeyPath) -> Any:
        if isinstance(node, MappingNode) and node.tag == _YAML + "map":
            return self._mapping(node, path)
        if isinstance(node, SequenceNode) and node.tag == _YAML + "seq":
            return self._sequence(node, path)
        if isinstance(node, ScalarNode) and node.tag in self.scalars:
            return self._scalar(node, path)
        self.bad_tag(path, node)
        return None

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        try:
            value = self.scalars[node.tag](node)
        except ValueError as exc:
            self.problem(path, f"{node.value} is not a valid {_display_tag(node.tag)}: {exc}", node)
            return node.value
        if node.style is None and self._implicit(node):
            trap = _trap(node.value, value)
            if trap is not None:
                self.problem(path, trap, node)
                return node.value
        return value

    def _implicit(self, node: ScalarNode) -> bool:
        """Whether the scalar's type came from its text rather than an explicit tag."""
        resolved = self.constructor.resolve(  # type: ignore[no-untyped-call]
            ScalarNode, node.value, (True, False)
        )
        return bool(resolved == node.tag)

    def _sequence(self, node: SequenceNode, path: KeyPath) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self.lines[(*path, index)] = _line(item.start_mark) or 0
            items.append(self.build(item, (*path, index)))
        return items

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[Any, Any]:
        """Merged mappings (``<<``) first, so the mapping's own keys override them."""
        merges = [value for key, value in node.value if key.tag == _MERGE_TAG]
        result: dict[Any, Any] = {}
        for merged in reversed(list(self._merge_sources(merges, path))):
            result.update(merged)
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key is _BAD_KEY:
                continue
            part = key_part(key)
            line = _line(key_node.start_mark) or 0
            if key in first_line:
                message = (
                    f"duplicate key {part!r} (first at line {first_line[key]}); "
                    "YAML would keep only the last one"
                )
                self.problem((*path, part), message, key_node)
            first_line.setdefault(key, line)
            self.lines[(*path, part)] = line
            result[key] = self.build(value_node, (*path, part))
        return result

    def _key(self, node: Node, path: KeyPath) -> Any:
        if not isinstance(node, ScalarNode):
            self.problem(path, "mapping keys must be plain values, not lists or mappings", node)
            return _BAD_KEY
        if node.tag not in self.scalars:
            self.bad_tag((*path, key_part(node.value)), node)
            return _BAD_KEY
        return self._scalar(node, (*path, key_part(node.value)))

    def _merge_sources(self, merges: list[Node], path: KeyPath) -> Iterator[dict[Any, Any]]:
        """Mappings merged in with ``<<``, in precedence order (the first one wins)."""
        for node in merges:
            sources = node.value if isinstance(node, SequenceNode) else [node]
            for source in sources:
                if isinstance(source, MappingNode):
                    yield self._mapping(source, path)
                else:
                    self.problem(path, "<< (merge) takes a mapping or a list of mappings", node)


def _trap(text: str, value: Any) -> str | None:
    """Why an unquoted scalar does not mean what it looks like, or None.

    Only what PyYAML really turns into something else is flagged: ``yes/no/on/off``
    become booleans; ``y`` and ``n`` stay text there, so ``prefix: n`` is left alone.
    """
    word = text.lower()
    if word in _BOOLEAN_WORDS and isinstance(value, bool):
        meaning = "true" if _BOOLEAN_WORDS[word] else "false"
        return f'{text} is read by YAML 1.1 as {meaning}; write {meaning} or quote it: "{text}"'

    if isinstance(value, int | float) and not isinstance(value, bool):
        if ":" in text:
            return f'{text} is read by YAML 1.1 as the number {value}; quote it: "{text}"'
        if _OCTAL.fullmatch(text):
            return f'{text} is read by YAML 1.1 as the octal number {value}; quote it: "{text}"'
    return None
