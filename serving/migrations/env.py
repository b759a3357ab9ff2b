"""Alembic's entry point for the outcomes store: run the migrations on the connection
:class:`serving.outcomes.OutcomeStore` passes in (``config.attributes["connection"]``), or
on ``sqlalchemy.url`` when Alembic's own command line is pointed at this folder."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from serving.outcomes import VERSION_TABLE, metadata

config = context.config


def run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.get_main_option("version_table") or VERSION_TABLE,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
