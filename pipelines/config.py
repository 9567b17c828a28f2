"""``pipelines.yml`` to frozen dataclasses, with all of its validation.

A configuration looks like::

    allowed_modules: [acme.plugins]      # optional: more importable prefixes
    pipelines:
      news:                              # ^[a-z0-9][a-z0-9_-]{0,63}$
        description: Headlines to Discord
        enabled: true
        timeout: 120                     # seconds
        tags: [news]
        schedule: {cron: "0 */6 * * *"}  # checked by the scheduler's validator
        chain:
          - class: acme.plugins.Fetch
            kwargs: {url: "https://example.org"}

Every problem is collected and reported at once in one ``ConfigError``; each names
its key path, line and file. Classes are imported through ``registry`` (allowed
prefixes only) and their kwargs are bound to their signature without instantiating
them. The ``schedule:`` block belongs to the scheduler: here it is only checked to be
a mapping and handed to the ``validate_schedule`` callback, if one is given.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from .core import transform_style
from .errors import ConfigError, Problem, RegistryError
from .pipeline import Pipeline, StageSpec, StateStore
from .registry import ENV_VAR, allowed_prefixes, is_module_name, resolve_class
from .yamlsafe import (
    FILE_PATH,
    MAX_BYTES,
    KeyPath,
    LineMap,
    check_size,
    format_path,
    key_part,
    parse_yaml,
)

logger = logging.getLogger(__name__)

ScheduleValidator = Callable[[str, Any, str, int | None], list[Problem]]
"""``(pipeline_name, schedule_block, key_path, line) -> problems`` for one ``schedule:``."""

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
TOP_KEYS = ("pipelines", "allowed_modules")
PIPELINE_KEYS = ("description", "enabled", "schedule", "chain", "timeout", "tags")
STAGE_KEYS = ("class", "kwargs")
_MISSING = object()
_T = TypeVar("_T")


@dataclass(frozen=True)
class StageConfig:
    """One stage: the resolved class and the kwargs it will be built with."""

    class_path: str
    kwargs: Mapping[str, Any]
    cls: type
    line: int | None = None


@dataclass(frozen=True)
class PipelineConfig:
    """One validated pipeline of ``pipelines.yml``."""

    name: str
    description: str
    enabled: bool
    chain: tuple[StageConfig, ...]
    timeout: float | None = None
    schedule: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = ()
    line: int | None = None

    @property
    def scheduled(self) -> bool:
        """Whether the scheduler should fire it: enabled and with a ``schedule:`` block."""
        return self.enabled and self.schedule is not None

    def build(
        self, *, state_store: StateStore | None = None, database_url: str | None = None
    ) -> Pipeline:
        """The runnable ``Pipeline`` (stage instances are made per run, not here)."""
        stages = tuple(StageSpec(s.cls, s.kwargs, s.class_path) for s in self.chain)
        return Pipeline(
            name=self.name,
            stages=stages,
            description=self.description,
            timeout=self.timeout,
            state_store=state_store,
            database_url=database_url,
        )


@dataclass(frozen=True)
class Config:
    """A validated ``pipelines.yml``.

    ``allowed_modules`` holds every prefix classes were imported under: built-ins,
    the file's ``allowed_modules:`` and ``PIPEBOT_ALLOWED_MODULES``.
    """

    pipelines: Mapping[str, PipelineConfig]
    source: str
    allowed_modules: tuple[str, ...]


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    validate_schedule: ScheduleValidator | None = None,
) -> Config:
    """Read and validate the file at ``path``; raise ``ConfigError`` with every problem."""
    source = str(path)
    text = _read(Path(path), source)
    return parse_config(text, source=source, environ=environ, validate_schedule=validate_schedule)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    environ: Mapping[str, str] | None = None,
    validate_schedule: ScheduleValidator | None = None,
) -> Config:
    """Validate configuration ``text``; raise ``ConfigError`` with every problem."""
    document = parse_yaml(text, source=source)
    validator = _Validator(
        document.lines,
        source,
        os.environ if environ is None else environ,
        validate_schedule,
    )
    config = validator.config(document.data)
    problems = _merge(document.problems, validator.problems)
    if problems or config is None:
        raise ConfigError(problems)
    logger.debug("%s: %d pipelines", source, len(config.pipelines))
    return config


def _read(path: Path, source: str) -> str:
    def fail(message: str) -> ConfigError:
        return ConfigError([Problem(FILE_PATH, message, None, source)])

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not a file") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    check_size(len(raw), source=source)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _merge(yaml_problems: tuple[Problem, ...], found: list[Problem]) -> list[Problem]:
    """All problems in line order; a YAML problem hides later ones at the same path."""
    taken = {problem.path for problem in yaml_problems}
    problems = [*yaml_problems, *(p for p in found if p.path not in taken)]
    return sorted(problems, key=lambda p: (p.line is not None, p.line or 0))


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return f"a {type(value).__name__}"


class _Validator:
    """Checks one parsed document section by section, collecting every problem."""

    def __init__(
        self,
        lines: LineMap,
        source: str,
        environ: Mapping[str, str],
        validate_schedule: ScheduleValidator | None,
    ) -> None:
        self.lines = lines
        self.source = source
        self.environ = environ
        self.validate_schedule = validate_schedule
        self.problems: list[Problem] = []

    def problem(self, path: KeyPath, message: str) -> None:
        line = self.lines.nearest(path)
        self.problems.append(Problem(format_path(path), message, line, self.source))

    def config(self, data: Any) -> Config | None:
        if not isinstance(data, dict):
            self.problem((), f"must be a mapping with a pipelines: key, got {_describe(data)}")
            return None
        self.unknown_keys((), data, TOP_KEYS)
        prefixes = self.allowed_modules(data.get("allowed_modules", _MISSING))
        pipelines = self.pipelines(data.get("pipelines", _MISSING), prefixes)
        return Config(MappingProxyType(pipelines), self.source, prefixes)

    def unknown_keys(self, path: KeyPath, mapping: dict[Any, Any], known: Collection[str]) -> None:
        for key in mapping:
            if key in known:
                continue
            close = difflib.get_close_matches(key_part(key), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(known)}"
            self.problem((*path, key_part(key)), f"unknown key {key_part(key)!r}; {hint}")

    def allowed_modules(self, value: Any) -> tuple[str, ...]:
        path: KeyPath = ("allowed_modules",)
        modules: list[str] = []
        if value is not _MISSING and not isinstance(value, list):
            self.problem(path, f"must be a list of module names, got {_describe(value)}")
        elif isinstance(value, list):
            for index, name in enumerate(value):
                if isinstance(name, str) and is_module_name(name):
                    modules.append(name)
                else:
                    self.problem((*path, index), f"not a dotted module name: {_describe(name)}")
        try:
            return allowed_prefixes(modules, self.environ)
        except RegistryError as exc:
            self.problems.append(Problem(f"${ENV_VAR}", str(exc), None, self.source))
            return allowed_prefixes(modules, {})

    def pipelines(self, value: Any, prefixes: tuple[str, ...]) -> dict[str, PipelineConfig]:
        path: KeyPath = ("pipelines",)
        if value is _MISSING:
            self.problem((), "missing required key pipelines")
            return {}
        if not isinstance(value, dict) or not value:
            self.problem(path, f"must be a non-empty mapping of pipelines, got {_describe(value)}")
            return {}
        result: dict[str, PipelineConfig] = {}
        for name, body in value.items():
            pipeline = self.pipeline(name, body, prefixes)
            if pipeline is not None:
                result[name] = pipeline
        return result

    def pipeline(self, name: Any, body: Any, prefixes: tuple[str, ...]) -> PipelineConfig | None:
        path: KeyPath = ("pipelines", key_part(name))
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            self.problem(
                path,
                f"bad pipeline name {key_part(name)!r}: use 1-64 lowercase letters, digits, "
                "_ or -, starting with a letter or digit",
            )
        if not isinstance(body, dict):
            self.problem(path, f"must be a mapping with a chain: list, got {_describe(body)}")
            return None
        self.unknown_keys(path, body, PIPELINE_KEYS)
        description = self.typed(path, body, "description", str, "", "a string")
        enabled = self.typed(path, body, "enabled", bool, True, "true or false")
        tags = self.tags(path, body.get("tags", _MISSING))
        timeout = self.timeout(path, body.get("timeout", _MISSING))
        schedule = self.schedule(str(name), path, body.get("schedule", _MISSING))
        chain = self.chain((*path, "chain"), body.get("chain", _MISSING), prefixes)
        return PipelineConfig(
            name=str(name),
            description=description,
            enabled=enabled,
            chain=chain,
            timeout=timeout,
            schedule=schedule,
            tags=tags,
            line=self.lines.get(path),
        )

    def typed(
        self, path: KeyPath, body: dict[str, Any], key: str, kind: type[_T], default: _T, what: str
    ) -> _T:
        value = body.get(key, default)
        if isinstance(value, kind):
            return value
        self.problem((*path, key), f"must be {what}, got {_describe(value)}")
        return default

    def tags(self, path: KeyPath, value: Any) -> tuple[str, ...]:
        if value is _MISSING:
            return ()
        if isinstance(value, list) and all(isinstance(tag, str) and tag for tag in value):
            return tuple(value)
        self.problem((*path, "tags"), "must be a list of non-empty strings")
        return ()

    def timeout(self, path: KeyPath, value: Any) -> float | None:
        if value is _MISSING:
            return None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(value) and value > 0:
            return float(value)
        message = f"must be a positive number of seconds, got {_describe(value)}"
        self.problem((*path, "timeout"), message)
        return None

    def schedule(self, name: str, path: KeyPath, value: Any) -> Mapping[str, Any] | None:
        if value is _MISSING:
            return None
        where: KeyPath = (*path, "schedule")
        if not isinstance(value, dict):
            self.problem(
                where, f"must be a mapping (cron:, interval:, ...), got {_describe(value)}"
            )
            return None
        if self.validate_schedule is not None:
            found = self.validate_schedule(name, value, format_path(where), self.lines.get(where))
            self.problems.extend(p if p.source else replace(p, source=self.source) for p in found)
        return MappingProxyType(value)

    def chain(
        self, path: KeyPath, value: Any, prefixes: tuple[str, ...]
    ) -> tuple[StageConfig, ...]:
        if value is _MISSING:
            self.problem(path[:-1], "missing required key chain (the list of stages)")
            return ()
        if not isinstance(value, list) or not value:
            self.problem(path, f"must be a non-empty list of stages, got {_describe(value)}")
            return ()
        stages = (self.stage((*path, index), item, prefixes) for index, item in enumerate(value))
        return tuple(stage for stage in stages if stage is not None)

    def stage(self, path: KeyPath, value: Any, prefixes: tuple[str, ...]) -> StageConfig | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping with a class: key, got {_describe(value)}")
            return None
        self.unknown_keys(path, value, STAGE_KEYS)
        kwargs = self.kwargs(path, value.get("kwargs", _MISSING))
        class_path = value.get("class", _MISSING)
        if class_path is _MISSING:
            self.problem(path, "missing required key class (the dotted path of a Transform)")
            return None
        if not isinstance(class_path, str):
            self.problem(
                (*path, "class"), f"must be a dotted class path, got {_describe(class_path)}"
            )
            return None
        cls = self.resolve(path, class_path, prefixes)
        if cls is None or kwargs is None:
            return None
        self.check_kwargs(path, class_path, cls, kwargs, "kwargs" in value)
        return StageConfig(class_path, MappingProxyType(kwargs), cls, self.lines.get(path))

    def kwargs(self, path: KeyPath, value: Any) -> dict[str, Any] | None:
        if value is _MISSING:
            return {}
        if not isinstance(value, dict):
            self.problem((*path, "kwargs"), f"must be a mapping, got {_describe(value)}")
            return None
        bad = [key for key in value if not isinstance(key, str) or not key.isidentifier()]
        for key in bad:
            self.problem((*path, "kwargs", key_part(key)), "kwarg names must be identifiers")
        return None if bad else value

    def resolve(self, path: KeyPath, class_path: str, prefixes: tuple[str, ...]) -> type | None:
        where: KeyPath = (*path, "class")
        try:
            cls = resolve_class(class_path, prefixes)
        except RegistryError as exc:
            self.problem(where, str(exc))
            return None
        index = path[-1]
        if transform_style(cls) == "produce" and index != 0:
            self.problem(
                where,
                f"{cls.__name__} is a source (it defines produce) and must be the first stage",
            )
        return cls

    def check_kwargs(
        self, path: KeyPath, class_path: str, cls: type, kwargs: dict[str, Any], given: bool
    ) -> None:
        """Bind ``kwargs`` to the class signature, as instantiating would, without doing so."""
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):
            logger.debug("no signature for %s; kwargs not checked", class_path)
            return
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            where: KeyPath = (*path, "kwargs") if given else path
            if not self.explain_kwargs(where, class_path, signature, kwargs):
                self.problem(where, f"kwargs do not fit {class_path}: {exc}")

    def explain_kwargs(
        self, where: KeyPath, class_path: str, signature: inspect.Signature, kwargs: dict[str, Any]
    ) -> bool:
        """Report unknown and missing kwargs one by one; False when neither explains it."""
        params = signature.parameters.values()
        by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        accepted = [p.name for p in params if p.kind in by_name]
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        unknown = [] if open_ended else [key for key in kwargs if key not in accepted]
        listing = ", ".join(accepted) if accepted else "none"
        for key in unknown:
            self.problem(
                (*where, key), f"{class_path} takes no kwarg {key!r} (accepted: {listing})"
            )
        missing = [
            p.name
            for p in params
            if p.kind in by_name and p.default is inspect.Parameter.empty and p.name not in kwargs
        ]
        for name in missing:
            self.problem(where, f"missing required kwarg {name!r} for {class_path}")
        return bool(unknown or missing)
