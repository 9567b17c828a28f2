"""Logging for the entry points: one line per event, plain text or JSON (``LOG_FORMAT``).

Secrets are masked by ``RedactingFilter``, attached to the handler that
``configure_logging`` installs on the root logger, so it sees the records of every
logger that propagates (``discord.*`` at DEBUG included): the formatted message (``msg``
with its ``args``), the traceback, the stack and any ``extra`` fields. The shapes it
knows are listed in ``SECRET_PATTERNS``: Discord bot tokens and interaction tokens,
webhook and interaction URLs, ``Authorization`` headers, bearer tokens, JWTs,
``token=``/``password=``/``secret=``/``api_key=`` pairs (also as JSON or Python
reprs) and passwords in URLs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MASK = "***"
_VALUE = r"""(?:"[^"\n]*"|'[^'\n]*'|[^\s'",;&}\]]+)"""
"""A value after ``key=`` or ``key:``: quoted (spaces allowed) or up to a delimiter."""

SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization: Bot x / 'Authorization': 'Bearer x' / authorization=Basic x
    re.compile(
        r"(?i)(authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:bot|bearer|basic|token)[ \t]+)?)"
        r"[^\s'\",;}\]]+"
    ),
    re.compile(r"(?i)(\bbearer[ \t]+)[\w.~+/-]{8,}=*"),  # 8+: not the word "token"
    # token=x, "password": "x", DISCORD_TOKEN=x, api_key: x, client_secret=x ...
    re.compile(
        r"(?i)((?:token|passw(?:or)?d|secret|api[_-]?key|private[_-]?key|credential)"
        r"[\w-]*[\"']?[ \t]*[:=][ \t]*)" + _VALUE
    ),
    # scheme://user:password@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(@)"),
    # /webhooks/<id>/<token>, /interactions/<id>/<token>/callback
    re.compile(r"(?i)(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"]+"),
    # bare Discord interaction tokens (base64 of "interaction:...")
    re.compile(r"()aW50ZXJhY3Rpb246[\w.-]+"),
    # bare Discord bot tokens: base64(user id) . timestamp . hmac
    re.compile(r"()\b[\w-]{23,28}\.[\w-]{6,7}\.[\w-]{27,}"),
    # JWTs
    re.compile(r"()\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]*"),
)


def _mask(match: re.Match[str]) -> str:
    """Keep group 1 (and an ``@`` group 2), mask the rest; quotes around it stay."""
    whole, prefix = match.group(0), match.group(1)
    suffix = match.group(2) if match.re.groups >= 2 else ""
    value = whole[len(prefix) : len(whole) - len(suffix)]
    quote = value[0] if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0] else ""
    return f"{prefix}{quote}{MASK}{quote}{suffix}"


def redact(text: str) -> str:
    """``text`` with every secret shape in ``SECRET_PATTERNS`` masked as ``***``."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(_mask, text)
    return text


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes a caller added with ``extra=``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _clean(value: Any) -> Any:
    """``value`` with secrets masked in every string inside it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, traceback, stack and extras.

    Attach it to handlers (a logger's filters do not see records propagated from
    child loggers). It changes the record in place, so it runs once for all handlers.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, _clean(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            data.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = redact(record.exc_text)
        if record.stack_info:
            data["stack"] = redact(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def make_handler(log_format: str = "text") -> logging.Handler:
    """A stderr handler with the redacting filter and the text or JSON format."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    if log_format.lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(environ: Mapping[str, str] | None = None) -> logging.Handler:
    """``LOG_LEVEL`` (default INFO) and ``LOG_FORMAT`` (``text`` or ``json``) on the root.

    Returns the handler installed. Handlers other code adds later (discord.py's
    ``Client.run`` adds one unless given ``log_handler=None``) do not redact.
    """
    env = os.environ if environ is None else environ
    level = env.get("LOG_LEVEL", "INFO").upper()
    handler = make_handler(env.get("LOG_FORMAT", "text"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    for noisy in ("apscheduler", "alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
