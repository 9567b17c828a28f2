"""Slash-command groups, one module each; ``COGS`` is what ``PipeBot.setup_hook`` loads."""

from __future__ import annotations

from .base import PipeCog
from .control import ControlCommands
from .history import HistoryCommands
from .info import InfoCommands
from .jobs import JobsCommands
from .pipelines import PipelinesCommands
from .run import RunCommands
from .schedule import ScheduleCommands

COGS: tuple[type[PipeCog], ...] = (
    PipelinesCommands,
    RunCommands,
    ScheduleCommands,
    JobsCommands,
    ControlCommands,
    HistoryCommands,
    InfoCommands,
)

__all__ = ["COGS", "PipeCog"]
