"""Alembic migrations of the outcomes store (:mod:`serving.outcomes`), run in code on open."""
