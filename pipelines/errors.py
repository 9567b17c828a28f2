"""Exceptions raised by the pipelines package.

PipelineError
├── ConfigError            pipelines.yml cannot be used; carries every Problem found
├── RegistryError          a dotted class path is not allowed or cannot be imported
├── TransformContractError a class is not a usable Transform
│   └── DiscordSinkUnavailable   (pipelines.sinks.discord)
├── StageError             a stage raised while a pipeline ran (wraps the original)
├── FetchError             an HTTP or file fetch failed (pipelines.transforms.http)
└── StateStoreError        transform state could not be read or written (pipelines.state)
"""

from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    """Root of every error raised by ``pipelines``."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration, located as precisely as the input allows."""

    path: str
    message: str
    line: int | None = None
    source: str | None = None

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.path}: {self.message}"


class ConfigError(PipelineError):
    """A configuration is unusable; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in configuration"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class RegistryError(PipelineError):
    """A dotted path was refused (not allowed) or could not be resolved."""


class TransformContractError(PipelineError):
    """A class does not implement any Transform style, or its kwargs do not fit."""


class StageError(PipelineError):
    """A stage failed during a run; ``original`` is the exception it raised."""

    def __init__(self, index: int, class_name: str, original: BaseException) -> None:
        self.index = index
        self.class_name = class_name
        self.original = original
        super().__init__(
            f"stage {index} ({class_name}) failed: {type(original).__name__}: {original}"
        )
