"""Logging for the entry points: one line per event, plain or JSON (``LOG_FORMAT``)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping

SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization:\s*(?:bot|bearer)\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s'\",&]+"),
    re.compile(r"(://[^:/@\s]+:)[^@/\s]+(@)"),
    re.compile(r"(/(?:webhooks|interactions)/\d+/)[\w-]{20,}"),
)


def redact(text: str) -> str:
    """Mask tokens, passwords and webhook/interaction tokens in ``text``."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + "***" + (m.group(2) if m.lastindex == 2 else ""), text
        )
    return text


class RedactingFilter(logging.Filter):
    """Rewrites every record's message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data)


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """``LOG_LEVEL`` (default INFO) and ``LOG_FORMAT`` (``text`` or ``json``)."""
    env = os.environ if environ is None else environ
    level = env.get("LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    if env.get("LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    for noisy in ("apscheduler", "alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
