"""baseline: the tables of collab before Alembic

Exactly what collab wrote before it used Alembic (its ``schema_version`` 1).

A database that pre-Alembic collab wrote has exactly these tables and no
``alembic_version``; :func:`collab.store.schema.upgrade` recognises it by its
``schema_version`` row and stamps it with this revision instead of running it, so
its data stays where it is.

``schema_version`` is kept (with its row, 1) as a fence for that older code, which
refuses a database whose version it does not know: the first revision that changes
a table in a way it cannot read sets the row to 2 (see docs/storage.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "updates",
        sa.Column(
            "doc_id",
            sa.Integer,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("user", sa.Text, nullable=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column(
            "doc_id",
            sa.Integer,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )
    legacy = op.create_table("schema_version", sa.Column("version", sa.Integer, nullable=False))
    op.bulk_insert(legacy, [{"version": 1}])


def downgrade() -> None:
    for name in ("schema_version", "snapshots", "updates", "documents"):
        op.drop_table(name)
