"""Runs by status, newest first: index (status, started_at) instead of (status).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_status_started", "runs", ["status", "started_at"])
    op.drop_index("ix_runs_status", "runs")


def downgrade() -> None:
    op.create_index("ix_runs_status", "runs", ["status"])
    op.drop_index("ix_runs_status_started", "runs")
