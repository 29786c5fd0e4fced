"""Alembic's entry point: every ``alembic`` command and :mod:`collab.store.schema` run this."""

from collab.store import schema
from collab.store.sql import metadata

schema.run_env(metadata)
