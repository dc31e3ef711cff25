"""The schema: `videos` (one row per generation, the incident's columns and more) and
`video_claims` (one row per user and prompt key: the lock a `/create` must win).

Why two tables: a claim must be one conditional write against a unique key, yet a user may
legitimately get a second video for the same prompt (after a failure, after the window). So
the unique key lives on `video_claims`, which points at the video currently holding it, and
`videos` keeps every attempt as history. Alembic migrations (`service/stores/migrations`) create
this schema; the models here are what the code reads and writes through.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy.dialects import postgresql
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, Numeric, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Video", "VideoClaim", "IdempotencyKey", "TelegramUpdate", "VideoCallback", "UTCDateTime"]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time type and SQLAlchemy hands back naive
    values, so values are converted to UTC on the way in and tagged UTC on the way out.
    Naive datetimes are refused: a naive time is a bug waiting for a server in another zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Timestamp = Annotated[datetime, mapped_column(UTCDateTime())]
# BigInteger for ids shared with Telegram (user ids exceed 2**31); SQLite needs INTEGER for
# its rowid alias, hence the variant.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tg_user_id: Mapped[int] = mapped_column(BigInteger)
    prompt: Mapped[str] = mapped_column(Text)
    enhanced_prompt: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    video_url: Mapped[str | None] = mapped_column(Text)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    # What the claim needs: the normalised prompt (service.prompt_key), the attempt number of
    # the claim this video was generated under (the fencing token), why it failed, and what
    # the generation cost (also recorded for a superseded attempt: that money was spent).
    prompt_key: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    # Set by `python -m audit cleanup --apply` on a historical duplicate: the id of the first
    # video of its group. Null for everything else.
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger)
    # The provider's id for this attempt's paid job, recorded before the worker waits on it, so
    # that whoever takes the claim over after a crash adopts that job instead of paying again.
    provider_job_id: Mapped[str | None] = mapped_column(Text)
    # When this attempt asked the provider for a job whose id is not recorded yet (migration
    # 0005): a successor looks for that job at the provider before paying for another.
    job_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The generation parameters of the request (service.params; migration 0008): jsonb on
    # PostgreSQL, JSON text on SQLite. NULL without any, and on rows written before.
    params: Mapped[dict[str, Any] | None] = mapped_column(Text().with_variant(postgresql.JSONB(), "postgresql"))

    __table_args__ = (
        # Per user, not per prompt key: a btree entry holds at most ~2.7 kB, and a 2,000-character
        # prompt key can be three times that (900 CJK characters already overflow it).
        Index("ix_videos_user_created", "tg_user_id", "created_at"),
        Index("ix_videos_created_at", "created_at"),
        # What a takeover fences off: the (few) attempts still generating (migration 0004).
        Index("ix_videos_generating_user", "tg_user_id",
              postgresql_where=text("status = 'generating'"), sqlite_where=text("status = 'generating'")),
        # A job handed on between attempts is on both rows; the cost stays on the newest (0005).
        Index("ix_videos_provider_job", "provider_job_id",
              postgresql_where=text("provider_job_id IS NOT NULL"), sqlite_where=text("provider_job_id IS NOT NULL")),
    )


class VideoClaim(Base):
    __tablename__ = "video_claims"

    tg_user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # SHA-256 of the prompt key (`service.stores.base.key_digest`): a fixed 32 bytes, so any prompt
    # the API accepts fits the primary key's btree. The readable key stays on the video.
    key_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    # Null only inside the claiming transaction on SQLite, between the claim and the video insert.
    video_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("videos.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[Timestamp]
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The sweep asks every lease, in every process, for generating claims whose lease ran out:
        # only live claims are in this index, so that question stays cheap at millions of claims.
        Index("ix_claims_generating_lease", "lease_expires_at",
              postgresql_where=text("status = 'generating'"), sqlite_where=text("status = 'generating'")),
    )


class IdempotencyKey(Base):
    """A POST /create sent with an Idempotency-Key: the response every retry gets replayed."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(Text, primary_key=True)  # the caller: API key id, else tg user
    idem_key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the request
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while being admitted
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]

    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)


class TelegramUpdate(Base):
    """A Telegram webhook delivery already taken (redeliveries are recognised by update_id)."""

    __tablename__ = "telegram_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[Timestamp]

    __table_args__ = (Index("ix_telegram_updates_received_at", "received_at"),)


class TelegramPollOffset(Base):
    """Long polling's place in the bot's update queue (`python -m service telegram poll`): the
    `offset` the next getUpdates sends, one row per bot (its numeric id, from the token)."""

    __tablename__ = "telegram_poll_offsets"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[Timestamp]


class VideoCallback(Base):
    """The completion callback of one video (migration 0009): the outbox `service.callbacks`
    delivers from. `waiting` until the video ends, then `pending` (due at `next_attempt_at`,
    taken by one deliverer at a time under `lease_token`), then `delivered` or `failed`."""

    __tablename__ = "video_callbacks"

    video_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(32))  # video.ready | video.failed
    delivery_id: Mapped[str | None] = mapped_column(Text)  # webhook-id: one per event, the same on every retry
    video_url: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_token: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_video_callbacks_due", "next_attempt_at",
              postgresql_where=text("state = 'pending'"), sqlite_where=text("state = 'pending'")),
    )
