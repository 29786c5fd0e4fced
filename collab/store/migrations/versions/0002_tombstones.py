"""tombstones: the final state vector of every deleted document

One row per deletion (an *incarnation* of a name that ended): the name, when,
and the deleted document's state vector (lib0 encoded, as ``Doc.get_state()``
gives it). The deleted-document guard (collab/core/guard.py) closes a client
that still holds content of such an incarnation, and a running server notices
deletions made by another process by polling for ids it has not seen
(docs/security.md). The row's id orders deletions; nothing references it.

Older collab would not know about tombstones and would let a stale client merge
deleted content back in, so this revision sets the ``schema_version`` fence to 2
(docs/storage.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tombstones",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=False),
        sa.Column("state_vector", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_tombstones_name", "tombstones", ["name"])
    op.execute("UPDATE schema_version SET version = 2")


def downgrade() -> None:
    op.execute("UPDATE schema_version SET version = 1")
    op.drop_index("ix_tombstones_name", table_name="tombstones")
    op.drop_table("tombstones")
