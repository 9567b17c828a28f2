"""Schedule definitions as plain rows, and the audit trail of changes to them.

Every change bumps ``meta.schedules_revision`` in the same transaction, so a
scheduler process notices changes made by another process (the CLI, a second
instance) by polling one integer; on PostgreSQL the bump also sends a NOTIFY on
``CHANGES_CHANNEL`` at commit, which wakes the active scheduler at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from sys import intern
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pipelines.db import redact_url

from .errors import JobExistsError, JobLookupError, StoreError
from .models import Owner, Policies, ScheduleDef
from .tables import audit, meta, schedules

logger = logging.getLogger(__name__)
REVISION_KEY = "schedules_revision"
HEARTBEAT_KEY = "scheduler_heartbeat"
CHANGES_CHANNEL = "pipebot_schedules"
"""PostgreSQL NOTIFY channel of revision bumps; the payload is the store's schema."""
T = TypeVar("T")


@dataclass(frozen=True)
class SyncReport:
    """What reconciling the store with a desired set of schedules changed."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
        )


_JSON = json.JSONEncoder(sort_keys=True, default=str)
"""``json.dumps(..., sort_keys=True, default=str)`` without building an encoder per call."""


def _to_row(schedule: ScheduleDef, now: datetime) -> dict[str, Any]:
    p = schedule.policies
    return {
        "name": schedule.name,
        "pipeline": schedule.pipeline,
        "kind": schedule.kind,
        "fields": _JSON.encode(schedule.fields),
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "overlap": p.overlap,
        "catchup": p.catchup,
        "coalesce": p.coalesce,
        "misfire_grace_time": p.misfire_grace_time,
        "jitter": p.jitter,
        "timeout": p.timeout,
        "max_instances": p.max_instances,
        "owner": schedule.owner,
        "created_by": schedule.created_by,
        "created_at": schedule.created_at or now,
        "updated_at": now,
        "definition_hash": schedule.definition_hash(),
    }


_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
"""Positional placeholders of the DB-API parameter styles the bulk insert writes itself."""


def _insert_rows(conn: Connection, items: Sequence[ScheduleDef], now: datetime) -> None:
    """Insert new rows with one ``executemany`` of plain tuples.

    SQLAlchemy's per-row parameter handling took twice as long as SQLite's insert of
    10,000 rows, so the values are passed to the driver as they are, except the times,
    which go through the column type's own bind processor (once for the shared ``now``).
    """
    dialect = conn.dialect
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:  # another parameter style: let SQLAlchemy bind each row
        conn.execute(insert(schedules), [_to_row(s, now) for s in items])
        return
    names = list(schedules.columns.keys())
    process = schedules.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
    stamp: Callable[[Any], Any] = (lambda moment: moment) if process is None else process
    stamped_now = stamp(now)
    rows = []
    for schedule in items:
        row = _to_row(schedule, now)
        created = row["created_at"]
        row["created_at"] = stamped_now if created is now else stamp(created)
        row["updated_at"] = stamped_now
        rows.append(tuple(row[name] for name in names))
    quote = dialect.identifier_preparer.quote
    statement = (
        f"INSERT INTO {quote(schedules.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join(mark for _ in names)})"
    )
    conn.exec_driver_sql(statement, rows)


_ROW_COLUMNS = (
    "name", "pipeline", "kind", "fields", "timezone", "enabled", "overlap", "catchup",
    "coalesce", "misfire_grace_time", "jitter", "timeout", "max_instances", "owner",
    "created_by", "created_at", "updated_at",
)  # fmt: skip
_pick = itemgetter(*(list(schedules.columns.keys()).index(name) for name in _ROW_COLUMNS))
"""The values of ``_ROW_COLUMNS`` from a row of ``select(schedules)``, in one call."""
_MEMO_LIMIT = 4096
_policies_memo: dict[tuple[Any, ...], Policies] = {}


def _shared_policies(values: tuple[Any, ...]) -> Policies:
    """One ``Policies`` object per distinct combination (most schedules share one)."""
    policies = _policies_memo.get(values)
    if policies is None:
        overlap, catchup, coalesce, misfire, jitter, timeout, max_instances = values
        policies = Policies(
            overlap=overlap,
            catchup=catchup,
            coalesce=bool(coalesce),
            misfire_grace_time=misfire,
            jitter=jitter,
            timeout=timeout,
            max_instances=max_instances,
        )
        if len(_policies_memo) >= _MEMO_LIMIT:
            _policies_memo.clear()
        _policies_memo[values] = policies
    return policies


_Text = TypeVar("_Text", bound=str)


def _interned(text: _Text) -> _Text:
    """``sys.intern`` keeping a Literal type: one string object for a repeated value."""
    return cast(_Text, intern(text))


_moments_memo: dict[datetime, datetime] = {}


def _shared_moment(moment: datetime) -> datetime:
    """One object per distinct time: schedules added together share their creation time."""
    shared = _moments_memo.get(moment)
    if shared is None:
        if len(_moments_memo) >= _MEMO_LIMIT:
            _moments_memo.clear()
        shared = _moments_memo[moment] = moment
    return shared


def _from_row(row: Any) -> ScheduleDef:
    """A row of ``select(schedules)`` as a definition; repeated texts share one string,
    so that 10,000 loaded schedules stay small."""
    (
        name, pipeline, kind, fields, timezone, enabled, overlap, catchup, coalesce,
        misfire, jitter, timeout, max_instances, owner, created_by, created_at, updated_at,
    ) = _pick(row)  # fmt: skip
    return ScheduleDef(
        name=name,
        pipeline=intern(pipeline),
        kind=_interned(kind),
        fields={intern(key): value for key, value in json.loads(fields).items()},
        timezone=intern(timezone),
        policies=_shared_policies(
            (overlap, catchup, coalesce, misfire, jitter, timeout, max_instances)
        ),
        owner=_interned(owner),
        enabled=enabled,
        created_by=None if created_by is None else intern(created_by),
        created_at=_shared_moment(created_at),
        updated_at=_shared_moment(updated_at),
    )


_by_name = attrgetter("name")


class ScheduleStore:
    """CRUD over the ``schedules`` table; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _run(self, action: str, work: Callable[[Connection], T]) -> T:
        try:
            with self.engine.begin() as conn:
                return work(conn)
        except (JobExistsError, JobLookupError):
            raise
        except SQLAlchemyError as exc:
            where = redact_url(self.engine.url.render_as_string(hide_password=False))
            raise StoreError(f"cannot {action} ({where}): {type(exc).__name__}") from exc

    @staticmethod
    def _bump(conn: Connection) -> None:
        changed = conn.execute(
            update(meta).where(meta.c.key == REVISION_KEY).values(value=meta.c.value + 1)
        ).rowcount
        if not changed:
            conn.execute(insert(meta).values(key=REVISION_KEY, value=1))
        if conn.dialect.name == "postgresql":  # delivered at commit to LISTENing schedulers
            conn.execute(select(func.pg_notify(CHANGES_CHANNEL, func.current_schema())))

    def get_meta(self, key: str) -> int | None:
        value = self._run(
            f"read {key}", lambda conn: conn.scalar(select(meta.c.value).where(meta.c.key == key))
        )
        return None if value is None else int(value)

    def set_meta(self, key: str, value: int) -> None:
        def work(conn: Connection) -> None:
            if not conn.execute(update(meta).where(meta.c.key == key).values(value=value)).rowcount:
                conn.execute(insert(meta).values(key=key, value=value))

        self._run(f"write {key}", work)

    def beat(self) -> None:
        """Record that a scheduler process is alive (read by ``heartbeat``)."""
        self.set_meta(HEARTBEAT_KEY, int(time.time()))

    def clear_beat(self) -> None:
        """Record a clean stop: ``heartbeat`` reads 0 until a scheduler beats again."""
        self.set_meta(HEARTBEAT_KEY, 0)

    def heartbeat(self) -> int | None:
        """Epoch seconds of the last scheduler heartbeat; 0 after a clean stop; None never."""
        return self.get_meta(HEARTBEAT_KEY)

    def revision(self) -> int:
        def work(conn: Connection) -> int:
            value = conn.scalar(select(meta.c.value).where(meta.c.key == REVISION_KEY))
            return int(value or 0)

        return self._run("read the schedule revision", work)

    def all(self) -> list[ScheduleDef]:
        def work(conn: Connection) -> list[ScheduleDef]:
            loaded = [_from_row(r) for r in conn.execute(select(schedules))]
            loaded.sort(key=_by_name)
            return loaded

        return self._run("read schedules", work)

    def page(self, after: str | None, limit: int) -> list[ScheduleDef]:
        """Up to ``limit`` schedules by name after ``after``, in code point order everywhere."""
        key: ColumnElement[Any] = schedules.c.name
        if self.engine.dialect.name == "postgresql":
            key = key.collate("C")  # the database's locale would order names otherwise
        query = select(schedules).order_by(key).limit(limit)
        if after is not None:
            query = query.where(key > after)

        def work(conn: Connection) -> list[ScheduleDef]:
            return [_from_row(r) for r in conn.execute(query)]

        return self._run("read schedules", work)

    def get(self, name: str) -> ScheduleDef | None:
        def work(conn: Connection) -> ScheduleDef | None:
            row = conn.execute(select(schedules).where(schedules.c.name == name)).first()
            return None if row is None else _from_row(row)

        return self._run(f"read schedule {name!r}", work)

    def add_many(self, items: Sequence[ScheduleDef]) -> int | None:
        """Insert new schedules in one transaction; none is added if one name exists.

        Returns the schedule revision this change made (None when ``items`` is empty).
        """
        if not items:
            return None
        now = datetime.now(UTC)

        def work(conn: Connection) -> int:
            try:
                _insert_rows(conn, items, now)
            except IntegrityError:
                names = [s.name for s in items]
                existing = conn.scalars(
                    select(schedules.c.name).where(schedules.c.name.in_(names))
                ).first()
                raise JobExistsError(existing or names[0]) from None
            self._bump(conn)
            return int(conn.scalar(select(meta.c.value).where(meta.c.key == REVISION_KEY)) or 0)

        return self._run("add schedules", work)

    def add(self, schedule: ScheduleDef) -> None:
        self.add_many([schedule])

    def replace(self, schedule: ScheduleDef) -> None:
        """Overwrite an existing schedule's definition (keeps its creation time)."""
        now = datetime.now(UTC)

        def work(conn: Connection) -> None:
            row = _to_row(schedule, now)
            del row["created_at"]
            if not conn.execute(
                update(schedules).where(schedules.c.name == schedule.name).values(**row)
            ).rowcount:
                raise JobLookupError(schedule.name)
            self._bump(conn)

        self._run(f"update schedule {schedule.name!r}", work)

    def set_enabled(self, name: str, enabled: bool) -> ScheduleDef:
        def work(conn: Connection) -> ScheduleDef:
            result = conn.execute(
                update(schedules)
                .where(schedules.c.name == name)
                .values(enabled=enabled, updated_at=datetime.now(UTC))
            )
            if not result.rowcount:
                raise JobLookupError(name)
            self._bump(conn)
            return _from_row(conn.execute(select(schedules).where(schedules.c.name == name)).one())

        return self._run(f"{'resume' if enabled else 'pause'} schedule {name!r}", work)

    def remove(self, name: str) -> ScheduleDef:
        def work(conn: Connection) -> ScheduleDef:
            row = conn.execute(select(schedules).where(schedules.c.name == name)).first()
            # The delete's row count decides: on SQLite the select runs before the write
            # lock is taken, so two racing removes can both see the row.
            if (
                row is None
                or not conn.execute(delete(schedules).where(schedules.c.name == name)).rowcount
            ):
                raise JobLookupError(name)
            self._bump(conn)
            return _from_row(row)

        return self._run(f"remove schedule {name!r}", work)

    def clear(self, owners: Iterable[Owner] | None = None) -> int:
        def work(conn: Connection) -> int:
            statement = delete(schedules)
            if owners is not None:
                statement = statement.where(schedules.c.owner.in_(list(owners)))
            count = conn.execute(statement).rowcount
            if count:
                self._bump(conn)
            return int(count)

        return self._run("clear schedules", work)

    def names(self) -> list[str]:
        """Every schedule's name, in the code point order ``page`` uses."""
        return self._run(
            "read schedule names", lambda conn: sorted(conn.scalars(select(schedules.c.name)))
        )

    def count(self) -> int:
        return self._run(
            "count schedules",
            lambda conn: int(conn.scalar(select(func.count()).select_from(schedules)) or 0),
        )

    def sync(self, desired: Sequence[ScheduleDef], owner: Owner) -> SyncReport:
        """Make the schedules owned by ``owner`` exactly ``desired``, in one transaction.

        Only schedules whose definition really changed are rewritten; the enabled flag
        (paused from chat) survives. Names owned by someone else are left alone and
        reported as a conflict.
        """

        def work(conn: Connection) -> SyncReport:
            current = {r.name: _from_row(r) for r in conn.execute(select(schedules))}
            report = _plan(current, desired, owner)
            _apply(conn, report, {s.name: s for s in desired}, current)
            if report.added or report.changed or report.removed:
                self._bump(conn)
            return report

        return self._run(f"sync {owner} schedules", work)

    def audit(
        self, *, actor: str, surface: str, action: str, target: str, detail: str = ""
    ) -> None:
        self._run(
            "write the audit trail",
            lambda conn: conn.execute(
                insert(audit).values(
                    at=datetime.now(UTC),
                    actor=actor,
                    surface=surface,
                    action=action,
                    target=target,
                    detail=detail,
                )
            ),
        )

    def audit_trail(self, limit: int = 50) -> list[dict[str, Any]]:
        def work(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

        return self._run("read the audit trail", work)


def _plan(
    current: dict[str, ScheduleDef], desired: Sequence[ScheduleDef], owner: Owner
) -> SyncReport:
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    wanted = {s.name for s in desired}
    for schedule in desired:
        existing = current.get(schedule.name)
        if existing is None:
            added.append(schedule.name)
        elif existing.owner != owner:
            logger.warning(
                "schedule %s is owned by %s; %s definition ignored",
                schedule.name,
                existing.owner,
                owner,
            )
        elif existing.definition_hash() != schedule.definition_hash():
            changed.append(schedule.name)
        else:
            unchanged.append(schedule.name)
    removed = [n for n, s in current.items() if s.owner == owner and n not in wanted]
    return SyncReport(tuple(added), tuple(changed), tuple(sorted(removed)), tuple(unchanged))


def _apply(
    conn: Connection,
    report: SyncReport,
    desired: dict[str, ScheduleDef],
    current: dict[str, ScheduleDef],
) -> None:
    now = datetime.now(UTC)
    if report.added:
        conn.execute(insert(schedules), [_to_row(desired[n], now) for n in report.added])
    for name in report.changed:
        keep = current[name]
        row = _to_row(replace(desired[name], enabled=keep.enabled), now)
        row["created_at"] = keep.created_at or now
        conn.execute(update(schedules).where(schedules.c.name == name).values(**row))
    if report.removed:
        conn.execute(delete(schedules).where(schedules.c.name.in_(list(report.removed))))
