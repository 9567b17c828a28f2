"""Wiring pipelines.yml to the scheduler: targets by name, and the YAML schedules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import Config, load_config
from pipelines.state import SqlStateStore
from scheduler.models import ScheduleDef
from scheduler.schedules import block_validator, schedule_from_block
from scheduler.settings import SchedulerSettings
from scheduler.targets import PipelineTarget, Target

DEFAULT_CONFIG = "pipelines.yml"


@dataclass(frozen=True)
class Project:
    """A loaded pipelines.yml: what can run, what is scheduled, what runs at start-up."""

    config: Config
    targets: dict[str, Target]
    schedules: list[ScheduleDef]
    unscheduled: list[str]


def config_path(environ: Mapping[str, str] | None = None, given: str | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(given or env.get("PIPELINES_CONFIG") or DEFAULT_CONFIG)


def load_project(
    path: str | Path, settings: SchedulerSettings, environ: Mapping[str, str] | None = None
) -> Project:
    """Load and validate pipelines.yml (raises ConfigError listing every problem)."""
    config = load_config(
        path, environ=environ, validate_schedule=block_validator(settings.timezone)
    )
    store = SqlStateStore(settings.database_url)
    targets: dict[str, Target] = {}
    schedules: list[ScheduleDef] = []
    unscheduled: list[str] = []
    for name, pipeline in config.pipelines.items():
        if not pipeline.enabled:
            continue
        built = pipeline.build(state_store=store, database_url=settings.database_url)
        targets[name] = PipelineTarget(built, pipeline.description)
        if pipeline.schedule is None:
            unscheduled.append(name)
        else:
            schedules.append(
                schedule_from_block(
                    name,
                    pipeline.schedule,
                    default_timezone=settings.timezone,
                    timeout=pipeline.timeout,
                )
            )
    return Project(config, targets, schedules, unscheduled)
