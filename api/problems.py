"""Errors as RFC 9457 problem details (``application/problem+json``), in one place.

Handlers raise ``ApiProblem`` for what they judge themselves (validation, auth) and let
the scheduler's exceptions through; ``problem_middleware`` turns both, aiohttp's own
HTTP errors (unknown route, wrong method, body too large) and anything unexpected into
a problem response. ``PROBLEMS`` is the one table from domain errors to statuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from scheduler.dispatch import AlreadyRunningError
from scheduler.errors import (
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    ReadOnlyScheduleError,
    SchedulerError,
    StoreError,
    UnknownPipelineError,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:pipebot:problem:"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input: where it is (``policies.jitter``, ``query.limit``) and why."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(eq=False)
class ApiProblem(Exception):
    """An error answer: ``kind`` becomes the type URI (``urn:pipebot:problem:<kind>``)."""

    status: int
    kind: str
    title: str
    detail: str
    errors: tuple[FieldError, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def body(self, instance: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": TYPE_PREFIX + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.errors:
            data["errors"] = [error.to_dict() for error in self.errors]
        return data


def invalid(errors: list[FieldError], summary: str = "") -> ApiProblem:
    """422 listing every invalid input."""
    detail = summary or "; ".join(f"{e.field}: {e.message}" for e in errors)
    return ApiProblem(422, "invalid-request", "Invalid request", detail, tuple(errors))


PROBLEMS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (JobLookupError, 404, "schedule-not-found", "Schedule not found"),
    (JobExistsError, 409, "schedule-exists", "Schedule exists"),
    (AlreadyRunningError, 409, "already-running", "Already running"),
    (ReadOnlyScheduleError, 403, "schedule-read-only", "Schedule owned by pipelines.yml"),
    (UnknownPipelineError, 409, "pipeline-unavailable", "Pipeline not available"),
    (InvalidScheduleError, 422, "invalid-schedule", "Invalid schedule"),
    (StoreError, 503, "database-unavailable", "Database unavailable"),
    (SchedulerError, 503, "scheduler-unavailable", "Scheduler unavailable"),
)
"""Domain error -> (status, kind, title); the first matching class wins."""


def from_exception(exc: Exception) -> ApiProblem | None:
    """The problem a scheduler error stands for, or None if it is not one of ours."""
    for cls, status, kind, title in PROBLEMS:
        if isinstance(exc, cls):
            return ApiProblem(status, kind, title, _detail(exc))
    return None


def _detail(exc: Exception) -> str:
    if isinstance(exc, ReadOnlyScheduleError):
        return (
            f"schedule {exc.name!r} is defined in pipelines.yml: edit pipelines.yml to remove "
            f"or change it, or disable it with POST /api/schedules/{exc.name}/disable"
        )
    if isinstance(exc, UnknownPipelineError):
        return f"{exc}: it is not registered in this process"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def from_http(exc: web.HTTPException) -> ApiProblem:
    """aiohttp's own errors (404 route, 405 method, 413 body) as problems."""
    headers = {
        name: value for name, value in exc.headers.items() if name in ("Allow", "Retry-After")
    }
    kind = exc.reason.lower().replace(" ", "-") or "http-error"
    given = exc.text or ""
    if given and given != f"{exc.status}: {exc.reason}":
        detail = given.strip().splitlines()[0]  # a handler's own text, e.g. the status page's
    else:
        detail = {
            404: "no such resource",
            405: f"method not allowed here (allowed: {headers.get('Allow', 'none')})",
            413: "the request body is too large",
        }.get(exc.status, exc.reason)
    return ApiProblem(exc.status, kind, exc.reason, detail, headers=headers)


def problem_response(problem: ApiProblem, instance: str) -> web.Response:
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.body(instance)),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every error leaves as ``application/problem+json``."""
    try:
        return await handler(request)
    except ApiProblem as problem:
        return problem_response(problem, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects are answers, not errors
        return problem_response(from_http(exc), request.path)
    except Exception as exc:  # the one place unexpected errors become answers
        return problem_response(_unexpected(request, exc), request.path)


def _unexpected(request: web.Request, exc: Exception) -> ApiProblem:
    found = from_exception(exc)
    if found is None:
        logger.exception("%s %s failed", request.method, request.path)
        return ApiProblem(500, "internal-error", "Internal error", "the server failed; see its log")
    if found.status >= 500:
        logger.warning("%s %s: %s", request.method, request.path, found.detail)
    return found
