"""The outcomes table: one row per outcome recorded, with the scores of the time.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The outcomes of serving/outcomes.py at this revision (a migration is frozen: it never
# imports the current list).
OUTCOMES = ("contacted", "no_answer", "saved", "lost", "do_not_contact")


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("churn_probability", sa.Float, nullable=True),
        sa.Column("risk_band", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "outcome IN (" + ", ".join(f"'{o}'" for o in OUTCOMES) + ")",
            name="ck_outcomes_outcome",
        ),
    )
    op.create_index("ix_outcomes_customer_id", "outcomes", ["customer_id"])
    op.create_index("ix_outcomes_recorded_at", "outcomes", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_recorded_at", table_name="outcomes")
    op.drop_index("ix_outcomes_customer_id", table_name="outcomes")
    op.drop_table("outcomes")
