"""One module per schema revision, oldest first by their ``down_revision`` chain.

Alembic loads these files by path and ignores this one. A revision is frozen once
released: it spells its tables out instead of importing collab.store.sql, whose
tables describe only the newest schema.
"""
