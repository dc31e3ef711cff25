"""row level security on every table the service creates (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Supabase serves every table of `public` over its REST API, to anyone holding the project's public
anon key, under the grants it gives `anon` and `authenticated` by default. A claim table readable
and deletable that way defeats the guarantee (delete the claim, ask again, pay again), and
Supabase's advisor reports such a table as an error. With row level security enabled and no
policy, those roles see and change no row; the role that owns the tables (the service's own,
from DATABASE_URL) is not subject to it, so the service is unaffected.

`videos` gets it only when this service created it: an adopted table is the bot's, and the bot
may read it through the anon key (its policies are the operator's to decide). Alembic's own
`alembic_version` gets it too. SQLite has no roles: nothing to do.
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OWN_TABLES = ("video_claims", "idempotency_keys", "telegram_updates", "telegram_poll_offsets", "alembic_version",
              "claimfirst_adoption")


def _tables() -> list[str]:
    context = op.get_context()
    if context.as_sql:  # `migrate --sql`: the caller looked whether the bot's table was adopted
        adopted = bool(context.config.attributes.get("adopted"))
        return [t for t in OWN_TABLES if t != "claimfirst_adoption" or adopted] + ([] if adopted else ["videos"])
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    adopted = "claimfirst_adoption" in existing
    return [t for t in OWN_TABLES if t in existing] + ([] if adopted else ["videos"])


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in _tables():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in _tables():
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
