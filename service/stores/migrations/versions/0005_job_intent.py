"""the provider job's recovery point, and an index to find a job's other rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

`videos.job_requested_at`: written (fenced on the attempt, database clock) just before the
worker asks the provider for a job, and cleared when the job's id is recorded. A row that has
it without a `provider_job_id` is an attempt that may have a paid job nobody knows the id of:
whoever takes the claim over looks for that job at the provider before creating another
(rocket-rides' recovery point before a foreign call).

`ix_videos_provider_job`: a job handed on from one attempt to the next is on both rows; the
cost is kept on the newest only, which the outcome writes look up by job id.
"""

import sqlalchemy as sa
from alembic import op

from service.stores.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HAS_JOB = sa.text("provider_job_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("job_requested_at", UTCDateTime(), nullable=True))
    op.create_index("ix_videos_provider_job", "videos", ["provider_job_id"],
                    postgresql_where=HAS_JOB, sqlite_where=HAS_JOB)


def downgrade() -> None:
    op.drop_index("ix_videos_provider_job", table_name="videos")
    # A plain DROP COLUMN (see 0002's downgrade: a batch rebuild of `videos` is refused while
    # claims point at it).
    op.execute("ALTER TABLE videos DROP COLUMN job_requested_at")
