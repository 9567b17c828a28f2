"""Initial tables: schedules, runs (ledger and history), audit, meta.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from scheduler.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catchup", sa.String(16), nullable=False),
        sa.Column("coalesce", sa.Boolean, nullable=False),
        sa.Column("misfire_grace_time", sa.Float, nullable=True),
        sa.Column("jitter", sa.Float, nullable=False),
        sa.Column("timeout", sa.Float, nullable=True),
        sa.Column("max_instances", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(8), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("definition_hash", sa.String(16), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("schedule", sa.String(128), nullable=True),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scheduled_for", UTCDateTime, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("requested_by", sa.String(128), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("items", sa.Text, nullable=True),
        sa.Column("stages", sa.Text, nullable=True),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("fence", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("schedule", "scheduled_for", name="uq_runs_claim"),
    )
    op.create_index("ix_runs_pipeline_started", "runs", ["pipeline", "started_at"])
    op.create_index("ix_runs_schedule_started", "runs", ["schedule", "started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_started", "runs", ["started_at"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("audit")
    op.drop_index("ix_runs_started", "runs")
    op.drop_index("ix_runs_status", "runs")
    op.drop_index("ix_runs_schedule_started", "runs")
    op.drop_index("ix_runs_pipeline_started", "runs")
    op.drop_table("runs")
    op.drop_table("schedules")
