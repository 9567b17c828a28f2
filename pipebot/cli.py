"""The ``pipebot`` command line.

    pipebot validate [--config PATH]
    pipebot run [PIPELINE ...] [--config PATH]          (the legacy one-shot runner)
    pipebot serve [--config PATH]                       (scheduler, and bot with a token)
    pipebot next "<cron>" [--tz TZ] [--count N] [--after ISO] [--json]
    pipebot jobs [--json]
    pipebot jobs add NAME --pipeline P (--cron EXPR | --every 15m) [--tz TZ]
    pipebot jobs remove|pause|resume|run NAME
    pipebot history [NAME] [--limit N] [--json]
    pipebot health [--json]
    pipebot sync-commands [--if-changed]                (Discord slash commands)
    pipebot worker [--concurrency N] [--name NAME]      (Celery worker, celery extra)

Configuration errors and unknown names print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from bot.errors import BotError
from pipelines.errors import ConfigError, PipelineError
from scheduler.errors import SchedulerError
from scheduler.schedules import build_trigger, make_schedule
from scheduler.settings import SchedulerSettings

from .legacy import EXIT_CONFIG, load_pipelines, run_all
from .logs import configure_logging
from .project import config_path

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipebot", description="pipelines on schedule")
    parser.add_argument("--config", help="pipelines.yml (default: $PIPELINES_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate", help="check pipelines.yml and list every problem")
    run = sub.add_parser("run", help="run pipelines once and exit (legacy runner)")
    run.add_argument("pipelines", nargs="*")
    sub.add_parser("serve", help="run the scheduler (and the Discord bot with a token)")
    nxt = sub.add_parser("next", help="print the next fire times of a cron expression")
    nxt.add_argument("cron")
    nxt.add_argument("--tz", default=None)
    nxt.add_argument("--count", type=int, default=5)
    nxt.add_argument("--after", default=None, help="ISO 8601 moment (default: now)")
    nxt.add_argument("--json", action="store_true")
    jobs = sub.add_parser("jobs", help="list or change schedules")
    jobs.add_argument("--json", action="store_true")
    jobs_sub = jobs.add_subparsers(dest="action")
    add = jobs_sub.add_parser("add")
    add.add_argument("name")
    add.add_argument("--pipeline", required=True)
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron")
    when.add_argument("--every")
    add.add_argument("--tz", default=None)
    for action in ("remove", "pause", "resume", "run"):
        jobs_sub.add_parser(action).add_argument("name")
    history = sub.add_parser("history", help="recent runs")
    history.add_argument("name", nargs="?")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true")
    health = sub.add_parser("health", help="scheduler health")
    health.add_argument("--json", action="store_true")
    sync = sub.add_parser("sync-commands", help="push the Discord slash commands now")
    sync.add_argument("--if-changed", action="store_true", help="only when the command set changed")
    worker = sub.add_parser("worker", help="run pipelines for SCHEDULER_EXECUTOR=celery")
    worker.add_argument("--concurrency", type=_positive, default=None)
    worker.add_argument("--name", default=None, help="worker name (default: host:pid)")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv()
    configure_logging()
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except (SchedulerError, PipelineError, BotError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _dispatch(args: argparse.Namespace) -> int:
    settings = SchedulerSettings.from_env()
    path = config_path(given=args.config)
    command = args.command
    if command == "validate":
        load_pipelines(path, settings, [])
        print(f"{path}: ok")
        return 0
    if command == "run":
        return asyncio.run(run_all(load_pipelines(path, settings, args.pipelines), sys.stdout))
    if command == "serve":
        from .serve import serve

        return asyncio.run(serve(settings, path))
    if command == "next":
        return _next(args, settings)
    if command == "worker":
        from .worker import run_worker  # celery is an optional extra

        return run_worker(settings, path, concurrency=args.concurrency, name=args.name)
    if command == "sync-commands":
        return _sync_commands(settings, force=not args.if_changed)
    return _with_scheduler(args, settings, path)


def _sync_commands(settings: SchedulerSettings, *, force: bool) -> int:
    from bot.settings import BotSettings
    from bot.sync import run_sync_commands
    from scheduler.service import PipelineScheduler

    result = asyncio.run(
        run_sync_commands(PipelineScheduler(settings), BotSettings.from_env(), force=force)
    )
    print(result)
    return 0


def _next(args: argparse.Namespace, settings: SchedulerSettings) -> int:
    timezone = args.tz or settings.timezone
    schedule = make_schedule("next", "next", "cron", {"expression": args.cron}, timezone=timezone)
    trigger = build_trigger(schedule)
    moment = _parse_moment(args.after) if args.after else datetime.now(UTC)
    times: list[datetime] = []
    while len(times) < args.count and (moment := trigger.next_fire(moment)) is not None:
        times.append(moment)
    if args.json:
        print(
            json.dumps(
                {
                    "cron": args.cron,
                    "timezone": timezone,
                    "description": trigger.describe(),
                    "next": [t.isoformat() for t in times],
                }
            )
        )
    else:
        print(f"{args.cron} ({timezone}): {trigger.describe()}")
        for t in times:
            print(
                f"  {t.astimezone(trigger.zone).isoformat()}  ({t.astimezone(UTC):%Y-%m-%d %H:%M}Z)"
            )
    return 0


def _parse_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SchedulerError(f"--after: {text!r} is not an ISO 8601 date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _with_scheduler(args: argparse.Namespace, settings: SchedulerSettings, path: Path) -> int:
    from scheduler.service import PipelineScheduler

    from .serve import build_scheduler

    if getattr(args, "action", None) in ("add", "run"):
        scheduler, _ = build_scheduler(settings, path)  # these need the pipelines themselves
    else:  # reading and pausing work from the store alone, even with pipelines.yml broken
        scheduler = PipelineScheduler(settings)
    if args.command == "history":
        rows = scheduler.get_history(args.name, limit=args.limit)
        _emit(rows, args.json, _history_line)
        return 0
    if args.command == "health":
        report = scheduler.health_check()
        print(json.dumps(report, indent=2, default=str) if args.json else _health_text(report))
        return 0 if report["status"] != "down" else 1
    action = args.action
    actor = "cli"
    if action is None:
        _emit([s.to_dict() for s in scheduler.list_schedules()], args.json, _job_line)
    elif action == "add":
        info = scheduler.create_schedule(
            args.name,
            args.pipeline,
            cron=args.cron,
            every=args.every,
            timezone=args.tz,
            owner="cli",
            created_by=actor,
        )
        print(
            f"added {info.name}: {info.expression} ({info.timezone}), next {_when(info.next_run)}"
        )
    elif action == "remove":
        scheduler.unschedule(args.name, actor=actor, surface="cli")
        print(f"removed {args.name}")
    elif action in ("pause", "resume"):
        change = scheduler.disable if action == "pause" else scheduler.enable
        change(args.name, actor=actor, surface="cli")
        print(f"{action}d {args.name}")
    elif action == "run":
        record = asyncio.run(scheduler.arun(args.name, requested_by=actor, trigger="cli"))
        print(
            f"{record.pipeline}: {record.status} (run {record.run_id[:12]})"
            + (f" {record.error}" if record.error else "")
        )
        return 0 if record.status == "success" else 1
    return 0


def _emit(rows: list[dict[str, Any]], as_json: bool, line: Any) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        print(line(row))
    if not rows:
        print("(none)")


def _when(moment: Any) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        return moment
    return str(moment.isoformat(timespec="seconds"))


def _job_line(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else "paused"
    return (
        f"{row['name']:<24} {row['owner']:<5} {state:<8} {row['type']:<8} "
        f"{row['expression']:<18} {row['timezone']:<18} next {_when(row['next_run'])} "
        f"last {row['last_status'] or '-'}"
    )


def _history_line(row: dict[str, Any]) -> str:
    duration = row["duration_seconds"]
    took = f"{duration:.2f}s" if duration is not None else "-"
    return (
        f"{row['run_id'][:12]:<13} {row['pipeline']:<20} {row['trigger']:<9} "
        f"{row['status']:<10} {_when(row['scheduled_for'] or row['started_at'])} {took}"
        + (f"  {row['error']}" if row["error"] else "")
    )


def _health_text(report: dict[str, Any]) -> str:
    lines = [f"status: {report['status']}"]
    jobs = report.get("jobs", {})
    lines.append(f"schedules: {jobs.get('total', 0)} ({jobs.get('paused', 0)} paused)")
    metrics = report.get("metrics") or {}
    if metrics:
        lines.append(f"success rate: {metrics.get('success_rate')}")
    lines.extend(f"problem: {p}" for p in report.get("problems", []))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
