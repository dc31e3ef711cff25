"""idempotency keys for POST /create; Telegram updates already handled

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- `idempotency_keys`: one row per (caller scope, Idempotency-Key). Inserted before the request
  is admitted (so a concurrent retry with the same key sees it "in progress" and gets 409),
  completed with the response that is then replayed to every retry. Kept for the duplicate
  window; `created_at` is indexed for the expiry sweep.
- `telegram_updates`: the `update_id`s of webhook deliveries already taken. Telegram delivers
  again when it gets no 2xx in time; inserting the id first (ON CONFLICT DO NOTHING) is how a
  redelivery is recognised and answers 200 without a second claim or reply.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("idem_key", sa.Text(), primary_key=True),
        # SHA-256 (hex) of what the request asked for: the same key with another body is refused.
        sa.Column("fingerprint", sa.String(64), nullable=False),
        # NULL while the first request is still being admitted.
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_table(
        "telegram_updates",
        sa.Column("update_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_telegram_updates_received_at", "telegram_updates", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_telegram_updates_received_at", table_name="telegram_updates")
    op.drop_table("telegram_updates")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
