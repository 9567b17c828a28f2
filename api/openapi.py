"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/openapi.json``.

Built in code from the same constants the handlers validate with, so limits, enums and
field lists cannot drift apart. ``tests/api/test_openapi.py`` runs schemathesis against
the served document to keep the rest (status codes, media types, bodies) honest.
"""

from __future__ import annotations

from typing import Any

from scheduler.models import CATCHUPS, OVERLAPS, OWNERS

from .problems import PROBLEM_JSON
from .runs import LIMIT_DEFAULT, LIMIT_MAX, RUN_STATUSES
from .schedules import (
    DAY,
    INTERVAL_MAX,
    INTERVAL_UNITS,
    LIST_DEFAULT,
    LIST_LIMIT,
    MAX_INSTANCES,
    NAME,
    RESERVED_NAMES,
    RUN_WAIT_DEFAULT,
    RUN_WAIT_MAX,
)

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


STRING = {"type": "string"}
TIME = _nullable({"type": "string", "format": "date-time"})

POLICIES: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "overlap": {"type": "string", "enum": list(OVERLAPS), "default": "skip"},
        "catchup": {"type": "string", "enum": list(CATCHUPS), "default": "latest"},
        "coalesce": {"type": "boolean", "default": True},
        "misfire_grace_time": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 365 * DAY,
            "description": "Seconds a run may start late; null: no limit.",
        },
        "jitter": {"type": "number", "minimum": 0, "maximum": DAY, "default": 0},
        "timeout": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 7 * DAY,
            "description": "Seconds before a run is cancelled; null: the pipeline's own.",
        },
        "max_instances": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_INSTANCES,
            "default": 1,
        },
    },
}

SCHEDULE: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "name",
        "pipeline",
        "type",
        "expression",
        "timezone",
        "enabled",
        "owner",
        "next_run",
        "last_run",
        "last_status",
        "created_by",
        "description",
        "bound",
        "policies",
    ],
    "properties": {
        "name": STRING,
        "pipeline": STRING,
        "type": {"type": "string", "enum": ["cron", "interval", "date"]},
        "expression": STRING,
        "timezone": STRING,
        "enabled": {"type": "boolean"},
        "owner": {"type": "string", "enum": list(OWNERS)},
        "next_run": TIME,
        "last_run": TIME,
        "last_status": _nullable(STRING),
        "created_by": _nullable(STRING),
        "description": STRING,
        "bound": {
            "type": "boolean",
            "description": "False while the schedule's target is not registered in the process.",
        },
        "policies": {
            **POLICIES,
            "required": sorted(POLICIES["properties"]),
        },
    },
}

CREATE: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "pipeline"],
    "examples": [
        {
            "name": "nightly-report",
            "pipeline": "report",
            "cron": "0 3 * * *",
            "timezone": "Europe/Stockholm",
            "policies": {"overlap": "skip", "catchup": "latest", "timeout": 600},
        },
        {"name": "poll-feeds", "pipeline": "feeds", "every": "15m"},
        {"name": "hourly-sync", "pipeline": "sync", "interval": {"hours": 1, "minutes": 30}},
    ],
    "oneOf": [{"required": ["cron"]}, {"required": ["every"]}, {"required": ["interval"]}],
    "properties": {
        "name": {
            "type": "string",
            "pattern": f"^{NAME.pattern}$",
            "not": {"enum": sorted(RESERVED_NAMES)},
        },
        "pipeline": {"type": "string", "minLength": 1, "maxLength": 128},
        "cron": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "description": "Standard 5-field cron, e.g. '0 9 * * 1-5'.",
        },
        "every": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "A duration such as '15m' or '1h30m'.",
        },
        "interval": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                unit: {"type": "number", "minimum": 0, "maximum": INTERVAL_MAX}
                for unit in INTERVAL_UNITS
            },
        },
        "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
        "policies": POLICIES,
    },
}

RUN: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "run_id",
        "schedule",
        "pipeline",
        "trigger",
        "status",
        "scheduled_for",
        "started_at",
        "finished_at",
        "duration_seconds",
        "requested_by",
        "error",
        "items",
        "stages",
    ],
    "properties": {
        "run_id": STRING,
        "schedule": _nullable(STRING),
        "pipeline": STRING,
        "trigger": STRING,
        "status": STRING,
        "scheduled_for": TIME,
        "started_at": TIME,
        "finished_at": TIME,
        "duration_seconds": {"type": ["number", "null"]},
        "requested_by": _nullable(STRING),
        "error": _nullable(STRING),
        "items": {"type": "array", "items": {"type": "integer"}},
        "stages": {"type": "array", "items": STRING},
    },
}

PROBLEM: Schema = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": STRING,
        "status": {"type": "integer"},
        "detail": STRING,
        "instance": STRING,
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": STRING, "message": STRING},
            },
        },
    },
}


def _page_of(key: str, item: str) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [key, "next"],
        "properties": {
            key: {"type": "array", "items": _ref(item)},
            "next": {
                "type": ["string", "null"],
                "description": "The next page (same query, cursor set), or null.",
            },
        },
    }


def _param(name: str, schema: Schema, description: str, where: str = "query") -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


NAME_PARAM = _param(
    "name",
    {"type": "string", "minLength": 1, "not": {"enum": sorted(RESERVED_NAMES)}},
    "Schedule name.",
    "path",
)
LIMIT = {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_DEFAULT}
RUN_PAGE = [
    _param("limit", LIMIT, "Runs per page."),
    _param("before", {"type": "string", "minLength": 1, "maxLength": 64}, "Cursor: a run id."),
]

AUTH_ERRORS = {
    "401": _problem(
        "No bearer token (tokens are configured).",
        {"WWW-Authenticate": {"schema": STRING, "required": True}},
    ),
    "403": _problem(
        "The token is not valid; or, without configured tokens, a change or a non-loopback client."
    ),
}
NOT_FOUND = {"404": _problem("No schedule has that name.")}
INVALID = {"422": _problem("Invalid input; ``errors`` lists each field.")}
UNAVAILABLE = {"503": _problem("The database (or scheduler) is unavailable.")}
NEXT_LINK = {"Link": {"schema": STRING, "description": 'rel="next" when more follow.'}}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[Schema] | None = None,
    public: bool = False,
    body: Schema | None = None,
    operation_id: str,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": operation_id}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    op["responses"] = {**responses, **({} if public else AUTH_ERRORS), **UNAVAILABLE}
    if public:
        op["security"] = []
    return op


def _schedule_change(summary: str, operation_id: str) -> dict[str, Any]:
    return _op(
        summary,
        {"200": _json(_ref("Schedule"), "The schedule now."), **NOT_FOUND, **INVALID},
        params=[NAME_PARAM],
        operation_id=operation_id,
    )


def _paths() -> dict[str, Any]:
    health = _op(
        "The scheduler's health report (ok, degraded or down, with figures).",
        {"200": _json({"type": "object"}, "The report."), **INVALID},
        public=True,
        operation_id="schedulerHealth",
    )
    return {
        "/healthz": {
            "get": _op(
                "Liveness: 200 while the process serves.",
                {"200": _json(_ref("Live"), "Alive.")},
                public=True,
                operation_id="live",
            )
        },
        "/readyz": {
            "get": _op(
                "Readiness: database answers and the engine's last pass is recent.",
                {
                    "200": _json(_ref("Ready"), "Ready."),
                    "503": _json(_ref("Ready"), "Not ready; ``problems`` says why."),
                },
                public=True,
                operation_id="ready",
            )
        },
        "/api/scheduler/health": {"get": health},
        "/api/schedules/health": {"get": {**health, "operationId": "schedulerHealthAlias"}},
        "/api/schedules": {
            "get": _op(
                "Schedules by name, a page at a time (``after``: last name of the previous page).",
                {
                    "200": {**_json(_ref("ScheduleList"), "Schedules."), "headers": NEXT_LINK},
                    **INVALID,
                },
                params=[
                    _param(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": LIST_LIMIT,
                            "default": LIST_DEFAULT,
                        },
                        "Schedules per page.",
                    ),
                    _param(
                        "after",
                        {"type": "string", "minLength": 1, "maxLength": 128},
                        "Cursor: the last schedule name of the previous page.",
                    ),
                ],
                operation_id="listSchedules",
            ),
            "post": _op(
                "Create a schedule of a configured pipeline (owner ``api``).",
                {
                    "201": {
                        **_json(_ref("Schedule"), "Created."),
                        "headers": {"Location": {"schema": STRING, "required": True}},
                    },
                    "400": _problem("The body is not JSON."),
                    "409": _problem("A schedule with that name exists."),
                    "415": _problem("The body is not application/json."),
                    **INVALID,
                },
                body=_ref("ScheduleCreate"),
                operation_id="createSchedule",
            ),
        },
        "/api/schedules/{name}": {
            "get": _op(
                "One schedule.",
                {"200": _json(_ref("Schedule"), "The schedule."), **NOT_FOUND, **INVALID},
                params=[NAME_PARAM],
                operation_id="getSchedule",
            ),
            "delete": _op(
                "Remove a schedule (not one owned by pipelines.yml: 403 says what to do).",
                {"204": {"description": "Removed."}, **NOT_FOUND, **INVALID},
                params=[NAME_PARAM],
                operation_id="deleteSchedule",
            ),
        },
        "/api/schedules/{name}/enable": {
            "post": _schedule_change("Resume a schedule.", "enableSchedule")
        },
        "/api/schedules/{name}/disable": {
            "post": _schedule_change("Pause a schedule.", "disableSchedule")
        },
        "/api/schedules/{name}/run": {
            "post": _op(
                "Run now through the overlap guard; waits up to ``wait`` s for the result.",
                {
                    "200": _json(_ref("Run"), "The finished run."),
                    "202": {
                        **_json(_ref("RunAccepted"), "Still running after ``wait`` seconds."),
                        "headers": {"Location": {"schema": STRING, "required": True}},
                    },
                    **NOT_FOUND,
                    "409": _problem("Already running, or its pipeline is not registered."),
                    **INVALID,
                },
                params=[
                    NAME_PARAM,
                    _param(
                        "wait",
                        {
                            "type": "number",
                            "minimum": 0,
                            "maximum": RUN_WAIT_MAX,
                            "default": RUN_WAIT_DEFAULT,
                        },
                        "Seconds to wait for the run to finish.",
                    ),
                ],
                operation_id="runSchedule",
            )
        },
        "/api/schedules/{name}/history": {
            "get": _op(
                "Runs of one schedule, newest first.",
                {
                    "200": {**_json(_ref("RunList"), "Runs."), "headers": NEXT_LINK},
                    **NOT_FOUND,
                    **INVALID,
                },
                params=[NAME_PARAM, *RUN_PAGE],
                operation_id="scheduleHistory",
            )
        },
        "/api/runs": {
            "get": _op(
                "Runs, newest first, filtered.",
                {"200": {**_json(_ref("RunList"), "Runs."), "headers": NEXT_LINK}, **INVALID},
                params=[
                    _param("pipeline", {"type": "string", "minLength": 1, "maxLength": 128}, ""),
                    _param("schedule", {"type": "string", "minLength": 1, "maxLength": 128}, ""),
                    _param("status", {"type": "string", "enum": list(RUN_STATUSES)}, ""),
                    _param(
                        "since",
                        {"type": "string", "format": "date-time"},
                        "Runs started at or after this ISO 8601 time (with offset).",
                    ),
                    *RUN_PAGE,
                ],
                operation_id="listRuns",
            )
        },
        "/api/pipelines": {
            "get": _op(
                "Configured pipelines.",
                {"200": _json(_ref("PipelineList"), "Pipelines."), **INVALID},
                operation_id="listPipelines",
            )
        },
    }


def _schemas() -> dict[str, Schema]:
    return {
        "Problem": PROBLEM,
        "Policies": POLICIES,
        "Schedule": SCHEDULE,
        "ScheduleCreate": CREATE,
        "ScheduleList": _page_of("schedules", "Schedule"),
        "Run": RUN,
        "RunList": _page_of("runs", "Run"),
        "RunAccepted": {
            "type": "object",
            "required": ["schedule", "status", "detail", "history"],
            "properties": {
                "schedule": STRING,
                "status": {"type": "string", "enum": ["running"]},
                "detail": STRING,
                "history": STRING,
            },
        },
        "PipelineList": {
            "type": "object",
            "required": ["pipelines"],
            "properties": {
                "pipelines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "description"],
                        "properties": {"name": STRING, "description": STRING},
                    },
                }
            },
        },
        "Live": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
        "Ready": {
            "type": "object",
            "required": ["ready", "problems", "engine_seconds_since_pass", "database_reachable"],
            "properties": {
                "ready": {"type": "boolean"},
                "problems": {"type": "array", "items": STRING},
                "engine_seconds_since_pass": {"type": ["number", "null"]},
                "database_reachable": {"type": "boolean"},
            },
        },
    }


def _with_basic_reads(paths: dict[str, Any]) -> dict[str, Any]:
    """Reads also take HTTP Basic with the token as the password (browsers); changes don't."""
    for item in paths.values():
        get = item.get("get")
        if get is not None and get.get("security") != []:
            get["security"] = [{"bearer": []}, {"basic": []}]
    return paths


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pipebot API",
            "version": version,
            "description": (
                "Schedules and runs of pipebot's scheduler. Errors are RFC 9457 problem "
                "details. Without a configured token the API is read-only and loopback-only."
            ),
        },
        "security": [{"bearer": []}],
        "paths": _with_basic_reads(_paths()),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Reads only: any user name, the API token as the password.",
                },
            },
        },
    }
