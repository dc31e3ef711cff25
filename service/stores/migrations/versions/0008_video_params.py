"""generation parameters on the video

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

`videos.params`: the JSON object a `/create` carried beside its prompt (service.params), passed
to the provider and returned on `GET /videos/{id}`; NULL for a request without one and for every
row written before. `jsonb` on PostgreSQL (a reader can query it), text on SQLite (JSON text,
read back with json.loads). Nullable with no default: an adopted bot's inserts, which never name
it, keep working, and the downgrade drops exactly this column.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("params", sa.Text().with_variant(postgresql.JSONB(), "postgresql"), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (see 0002's downgrade: a batch rebuild of `videos` is refused while
    # claims point at it).
    op.execute("ALTER TABLE videos DROP COLUMN params")
