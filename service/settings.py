"""Settings, read from the environment (prefix ``CLAIMFIRST_``; the database URL as ``DATABASE_URL``).

Every timing constant the service uses is here, each with the reason for its default.
Settings are built by `Settings()` when the app is created, never at import, so tests can
pass their own.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices, BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError, ValidationInfo, field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

__all__ = [
    "Settings", "Policy", "GeneratorName", "normalize_database_url", "DEFAULT_SQLITE_PATH",
    "DEFAULT_DUPLICATE_WINDOW_HOURS", "DEFAULT_LEASE_SECONDS", "DEFAULT_COST_PER_VIDEO_USD",
    "MIN_API_KEY_CHARS", "DEFAULT_TELEGRAM_API_BASE", "describe_settings_error", "ApiKey", "Scope", "SCOPES",
    "parse_key_params",
]

DEFAULT_SQLITE_PATH = Path("data") / "claimfirst.db"

Policy = Literal["claim", "pending", "check", "none"]
GeneratorName = Literal["sim", "replicate"]
LogFormat = Literal["text", "json"]
# What an API key may do: POST /create, GET /videos/{id}, GET /metrics, GET /stats.
Scope = Literal["create", "read", "metrics", "admin"]
SCOPES: frozenset[Scope] = frozenset(("create", "read", "metrics", "admin"))

# Defaults the audit shares (it imports them), so the service and the audit apply one rule.
# Why each value: see the field it sets below.
DEFAULT_DUPLICATE_WINDOW_HOURS = 24.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_COST_PER_VIDEO_USD = 4.0
# An API key shorter than this is guessable; `openssl rand -hex 16` gives 32 characters.
MIN_API_KEY_CHARS = 16
SUPPORTED_DATABASES = ("sqlite", "postgresql")
DEFAULT_TELEGRAM_API_BASE = "https://api.telegram.org"
# What BotFather hands out: the bot's numeric id, a colon, then the secret part. Checked so a
# token can never put a "/" or "?" into the Bot API URL it is part of.
TELEGRAM_TOKEN_PATTERN = r"^[0-9]+:[A-Za-z0-9_-]+$"
# Telegram's own rule for setWebhook's secret_token: 1-256 of A-Z, a-z, 0-9, _ and -.
TELEGRAM_SECRET_PATTERN = r"^[A-Za-z0-9_-]{1,256}$"


# A parameter name CLAIMFIRST_KEY_PARAMS may list: the rule `service.params` holds names to.
KEY_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def parse_key_params(value: object) -> tuple[str, ...]:
    """CLAIMFIRST_KEY_PARAMS (and the audit's --key-params): comma-separated parameter names,
    sorted and deduplicated (the key depends on the set); ValueError for a bad name."""
    parts = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    names = [str(part).strip() for part in parts]
    if names == [""]:
        return ()
    for name in names:
        if not KEY_PARAM_NAME.match(name):
            raise ValueError(f"{name[:70]!r} is not a parameter name (1-64 of A-Z a-z 0-9 _, not starting with a digit)")
        if name == "prompt":
            raise ValueError("'prompt' is always the key; list only generation parameters")
    return tuple(sorted(set(names)))


class ApiKey(BaseModel):
    """One entry of CLAIMFIRST_API_KEYS. A bare key (the comma-separated form) has every scope
    and acts for every Telegram user: what every key meant before keys had scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    key: SecretStr
    scopes: frozenset[Scope] = SCOPES
    # None: any user. A set: /create only for these users, and only their videos are visible.
    tg_user_ids: frozenset[PositiveInt] | None = None

    def get_secret_value(self) -> str:
        return self.key.get_secret_value()

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        # A bearer token is sent in a header: visible ASCII only (RFC 6750 token68).
        if len(secret) < MIN_API_KEY_CHARS or not (secret.isascii() and secret.isprintable()) or " " in secret:
            raise ValueError(f"must be at least {MIN_API_KEY_CHARS} visible ASCII characters without spaces")
        return value


def normalize_database_url(url: str) -> str:
    """Return a SQLAlchemy URL that uses psycopg 3 for PostgreSQL.

    Railway and Heroku hand out ``postgres://`` (which SQLAlchemy no longer accepts) and
    ``postgresql://`` (which SQLAlchemy maps to psycopg2, not installed here).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - any parse failure; its message may quote the URL
        raise ValueError(
            "not a database URL; expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from exc
    if parsed.get_backend_name() not in SUPPORTED_DATABASES:
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL")
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value is never echoed (a DATABASE_URL carries a password,
    # CLAIMFIRST_API_KEYS are secrets); the message names the setting and what is wrong.
    model_config = SettingsConfigDict(env_prefix="CLAIMFIRST_", extra="ignore", hide_input_in_errors=True)

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_SQLITE_PATH}",
        validation_alias=AliasChoices("DATABASE_URL", "CLAIMFIRST_DATABASE_URL", "database_url"),
    )

    # The duplicate window comes from the bot's own rule (the write-up checks the last 24 h):
    # a user who asks again a day later wants a new video, not yesterday's.
    duplicate_window_hours: float = Field(default=DEFAULT_DUPLICATE_WINDOW_HOURS, gt=0)

    # How long a `generating` claim stays valid without a heartbeat. Long enough that a
    # worker survives two missed heartbeats (a GC pause, a slow database round trip);
    # short enough that when a worker dies the user waits half a minute to retry, not the
    # write-up's 24 hours. Leases (and the window) are judged by the database's clock, so
    # hosts whose clocks disagree cannot take each other's live claims.
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, gt=0)

    # A generation that has not finished after this long is treated as hung and marked
    # failed: twice the slowest generation seen in production (5 minutes).
    generation_timeout_seconds: float = Field(default=600.0, gt=0)

    # Generations run in the background, at most this many at once per process: the
    # provider rate-limits, and each one holds a lease that must keep being renewed.
    max_concurrent_generations: int = Field(default=4, ge=1)

    # Admitted generations waiting for a slot, per process. Each holds a claim and a user
    # waiting for a video: 32 behind 4 slots at 2-5 minutes each is already half an hour of
    # backlog, so past it /create answers 429 with Retry-After before claiming anything.
    max_queued_generations: int = Field(default=32, ge=0)

    # Every request answers within this bound: a database that does not (down, frozen,
    # behind a lock) gets 503 with Retry-After instead of a hung client. It also bounds each
    # statement on the server (PostgreSQL statement_timeout, SQLite's busy timeout), so an
    # abandoned statement does not hold locks. Five seconds is far above a healthy claim's
    # few milliseconds and below the timeouts of Telegram and most HTTP clients.
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # PostgreSQL connections per process for requests: `db_pool_size` kept open plus up to
    # `db_max_overflow` more under a burst. Each process also keeps 2 reserved for its
    # heartbeats and outcome writes. Size them so that, over every process and worker on the
    # database, processes x (pool_size + max_overflow + 2) stays below the server's
    # `max_connections` (PostgreSQL's default is 100, minus 3 reserved for superusers;
    # Supabase's smallest plan allows 60 direct connections). More is not faster: a claim holds
    # its connection for one round trip, and with 32 clients on 2 cores a process served more
    # /create with 8 connections than with 10 or 16 (bench/create_throughput.py).
    db_pool_size: int = Field(default=4, ge=1)
    db_max_overflow: int = Field(default=4, ge=0)
    # False: psycopg never prepares a statement on the server (prepare_threshold None). Needed
    # behind a transaction-mode pooler (Supabase's on port 6543, PgBouncer): each transaction
    # may run on another server connection, where a statement prepared on the first is unknown.
    db_prepare: bool = True
    # PostgreSQL: the schema of the service's own tables (video_claims, idempotency_keys,
    # telegram_updates, alembic_version; videos too when there is no bot table to adopt in
    # `public`). Another one keeps them out of what Supabase's REST API serves (`public`).
    # Put first on the connections' search_path, with `public` after it, where the bot's
    # `videos` is found.
    db_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    # Simulated generator: duration (one number, or "min,max" drawn uniformly), failure rate
    # and seed. The default is seconds, not the real 2-5 minutes, so a demo finishes.
    sim_seconds: Annotated[tuple[float, float], NoDecode] = (3.0, 8.0)
    sim_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    sim_seed: int | None = None
    # Incident replay only: honour the X-Sim-Seconds / X-Sim-Fail request headers, so a
    # replay can give each request its historical duration and outcome. Off in production.
    sim_hints: bool = False

    cost_per_video_usd: float = Field(default=DEFAULT_COST_PER_VIDEO_USD, ge=0)

    # Generation parameters that make a request another one (service.prompt_key.key_with_params),
    # e.g. "duration_seconds": a 5 s and a 10 s video of one prompt are two videos to pay for.
    # Empty (the default): params never change the key, which stays exactly the prompt's.
    key_params: Annotated[tuple[str, ...], NoDecode] = ()

    # --- Limits, decided by the claim itself (service.stores.limits); unset: none ---
    # New generations per user in the last 24 h (the database's clock); a duplicate never counts.
    user_daily_limit: int | None = Field(default=None, ge=1)
    # A user's generations running at once.
    user_concurrent_limit: int | None = Field(default=None, ge=1)
    # What all users' generations may cost in the last 24 h. Each reserves cost_per_video_usd
    # from its claim until its cost is recorded, so set that to the most one video can cost.
    # Declared after cost_per_video_usd on purpose: its validator compares them.
    daily_budget_usd: float | None = Field(default=None, gt=0)

    # Replicate (CLAIMFIRST_GENERATOR=replicate). The model is the official model's
    # "owner/name": its predictions endpoint needs no version hash, so a model update on
    # Replicate's side needs no redeploy here.
    replicate_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    # A setting rather than a constant so tests (and a proxy, if one is ever put in front)
    # can point it at a stand-in.
    replicate_base_url: str = "https://api.replicate.com/v1"
    # Replicate's own name for it, unprefixed, as its clients read it. A SecretStr so it
    # never shows in a repr, a log line or a validation error.
    replicate_api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REPLICATE_API_TOKEN", "CLAIMFIRST_REPLICATE_API_TOKEN", "replicate_api_token"),
    )
    # Between two polls of a running prediction. A 2-5 minute video polled every 2 s is
    # about 150 GETs, far inside Replicate's rate limit for reads, and a result reaches the
    # user at most 2 s after the provider has it.
    replicate_poll_seconds: float = Field(default=2.0, gt=0)
    # One HTTP exchange with Replicate (a create, a poll), not the generation. It also bounds
    # how long a successor waits before looking for a job an attempt asked for and never
    # recorded: a create not answered by then has landed or never will.
    replicate_request_timeout_seconds: float = Field(default=30.0, gt=0, le=300)

    # Which generator turns a won claim into a video: "sim" (no network, the default, so
    # a checkout runs with nothing configured) or "replicate". Declared after the
    # replicate_* settings on purpose: its validator checks them (see `_check_generator`).
    generator: GeneratorName = Field(default="sim", validate_default=True)

    # Incident replay only: the historical behaviours. Production runs "claim".
    policy: Policy = "claim"
    # Incident replay only: extra delay per database round trip (one store call, one
    # transaction), to imitate the bot's Supabase calls over HTTP.
    db_latency_ms: float = Field(default=0.0, ge=0)

    # --- Who may call, and how much one request may cost us (service.http.auth, service.http) ---
    # Bearer keys; every endpoint but /healthz requires one of them. Comma-separated bare keys
    # (each may do everything), or a JSON array of {"name", "key", "scopes", "tg_user_ids"}
    # (see `ApiKey`, and the README's "Keys and scopes"). Secret: never logged, echoed or
    # shown in an error.
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = ()
    # Serve without keys on a non-loopback address anyway (behind a gateway that authenticates).
    allow_anonymous: bool = False
    # The largest valid /create is a 2,000-character prompt and a 64-character category: at
    # most ~25 KB even with every character \u-escaped as a surrogate pair. 64 KiB admits all
    # of them and refuses a 10 MB body (413) from its Content-Length, before reading it.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # --- The Telegram bot (service.telegram): POST /telegram/webhook exists only with a token ---
    # Unprefixed, as BotFather's docs and most bot tooling name them. Secrets: never logged,
    # echoed, or shown in an error (the token is part of every Bot API URL, so the httpx log
    # lines that would show it are redacted too).
    telegram_bot_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "CLAIMFIRST_TELEGRAM_BOT_TOKEN", "telegram_bot_token"),
    )
    # Where the Bot API is: a setting so tests (and a local Bot API server, which lifts the
    # 20 MB limit on videos sent by URL) can point it elsewhere.
    telegram_api_base: str = Field(
        default=DEFAULT_TELEGRAM_API_BASE,
        validation_alias=AliasChoices("TELEGRAM_API_BASE", "CLAIMFIRST_TELEGRAM_API_BASE", "telegram_api_base"),
    )
    # Telegram sends it back in X-Telegram-Bot-Api-Secret-Token on every delivery: the only
    # proof a webhook call comes from Telegram. Required where the webhook is served or set
    # (`service.http.auth.webhook_refusal`), not here: long polling and a bot embedding
    # `ClaimFirst` read the same settings with a token and no webhook at all.
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, validate_default=True,
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_SECRET", "CLAIMFIRST_TELEGRAM_WEBHOOK_SECRET",
                                      "telegram_webhook_secret"),
    )

    # --- uvicorn (python -m service) ---
    # Requests being answered per worker process; past it a request gets 503 at once instead
    # of letting a flood starve everyone. Also how many connections may wait for a request's
    # head at once; past it the one waiting longest is closed (service.http.connections).
    # Half the usual 1,024 open-file limit, so a worker always keeps descriptors for its
    # database pool and logs, and above the 200-connection bursts the concurrency tests and
    # the replay send.
    limit_concurrency: int = Field(default=512, ge=1)
    # The request line and headers of one request. 16 KiB is h11's and Node's default, twice
    # nginx's 8 KiB line buffer: a bearer key, an Idempotency-Key and a tracing header take
    # under 1 KiB. Past it: 431, closed, never buffered further.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    # A client has this long to send a request's head (from connecting, or from its first
    # byte on a kept-alive connection), then this long again for the body. A real client sends
    # a /create (under 25 KB) in milliseconds, Telegram its updates likewise; 10 s leaves a
    # slow mobile link 6 KB/s for the largest body allowed, and frees a slow sender's slot
    # within seconds. Past either: 408, closed.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # An idle keep-alive connection is closed after this long: long enough for a client to
    # reuse its connection within a burst of requests, short enough that idle sockets give
    # their limit_concurrency slot back within seconds (uvicorn's own default).
    keepalive_seconds: int = Field(default=5, ge=1)
    # OS processes serving one socket (uvicorn workers) on one database: the claim is decided
    # by the database, so any number is safe; one per core is the usual choice.
    workers: int = Field(default=1, ge=1)
    # Whether the app applies migrations when it starts. `python -m service` migrates once
    # before its workers start and starts them with this off: a worker that uvicorn restarts
    # while the database is down must come up and answer 503, not fail its start-up (which
    # makes uvicorn stop the healthy workers too).
    migrate_on_start: bool = True
    # "text" for a person at a terminal; "json" (one object per line, with request and video
    # ids) for a log shipper. See service.logs.
    log_format: LogFormat = "text"

    # --- Completion callbacks (service.callbacks): POST /create's `callback_url` ---
    # The hosts a callback may go to, comma-separated: `hooks.example.com` (exactly that host)
    # or `*.example.com` (any host under it, not example.com itself). Empty: every callback_url
    # is refused (422). An allowlist, not a blocklist: the service POSTs wherever a caller
    # asks, so the operator names where that may be (no requests into their own network).
    callback_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Tests and local development only: callbacks to loopback and private addresses, and over
    # plain http. Off, every address the host resolves to must be public, checked again at
    # each delivery (a name that resolves elsewhere later is refused then).
    callback_allow_loopback: bool = False
    # The Standard Webhooks signing secret, `whsec_` + base64 of 24-64 random bytes
    # (`python -c "import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())"`).
    # Required with CLAIMFIRST_CALLBACK_HOSTS; declared after it so its validator sees it. Secret.
    callback_secret: SecretStr | None = Field(default=None, validate_default=True)
    # One delivery attempt, connect to answer: a receiver should answer at once and work later.
    # Bounded so a receiver that hangs holds a deliverer's slot for seconds, not minutes.
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Retries: the first after this long, doubling, never more than the cap apart, each drawn
    # between half and all of that (jitter, so a receiver coming back is not hit by every
    # retry at once). 5 s first: a restarting receiver is usually back within seconds.
    callback_retry_first_seconds: float = Field(default=5.0, gt=0)
    callback_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # A callback not delivered this long after its video ended is given up (state `failed`):
    # a day covers a receiver's weekend-night outage; the video's status stays readable on
    # GET /videos/{id} for as long as the row exists.
    callback_give_up_hours: float = Field(default=24.0, gt=0)
    # How often each worker looks for due callbacks (those it made itself are sent at once).
    callback_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    @field_validator("callback_hosts", mode="before")
    @classmethod
    def _split_callback_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("callback_hosts")
    @classmethod
    def _check_callback_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]", host):
                raise ValueError(f"{host!r} is not a host name or `*.` and a domain")
        return tuple(value)

    @field_validator("callback_secret")
    @classmethod
    def _check_callback_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and value.get_secret_value() == "":
            value = None
        if value is not None:
            text = value.get_secret_value()
            try:
                raw = base64.b64decode(text.removeprefix("whsec_"), validate=True)
            except ValueError:
                raw = b""
            if not text.startswith("whsec_") or not 24 <= len(raw) <= 64:
                raise ValueError("must be `whsec_` and the base64 of 24 to 64 random bytes (Standard Webhooks)")
        if value is None and info.data.get("callback_hosts"):
            raise ValueError("required when CLAIMFIRST_CALLBACK_HOSTS is set: callbacks are signed with it")
        return value

    @field_validator("daily_budget_usd")
    @classmethod
    def _check_budget(cls, value: float | None, info: ValidationInfo) -> float | None:
        cost = info.data.get("cost_per_video_usd")
        if value is not None and cost is not None and value < cost:
            raise ValueError(f"is below CLAIMFIRST_COST_PER_VIDEO_USD ({cost:g}): no video would ever fit")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    value = json.loads(value)
                except ValueError:
                    # json's message quotes the text around the error: it may be a key.
                    raise ValueError("not a JSON array of keys, nor comma-separated keys") from None
            else:
                value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(
                {"name": f"key{number}", "key": item} if isinstance(item, (str, SecretStr)) else item
                for number, item in enumerate(value, start=1)
            )
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
        names = [key.name for key in value]
        if len(set(names)) != len(names):
            raise ValueError("two keys have one name")
        if len({key.get_secret_value() for key in value}) != len(value):
            raise ValueError("a key is listed twice")
        return value

    @field_validator("key_params", mode="before")
    @classmethod
    def _parse_key_params(cls, value: object) -> tuple[str, ...]:
        return parse_key_params(value)

    @field_validator("database_url")
    @classmethod
    def _normalize_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("sim_seconds", mode="before")
    @classmethod
    def _parse_sim_seconds(cls, value: object) -> object:
        if isinstance(value, (int, float)):
            return (float(value), float(value))
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if len(parts) not in (1, 2) or not all(parts):
                raise ValueError("expected one number or 'min,max', e.g. 3 or 2,5")
            low, high = float(parts[0]), float(parts[-1])
            return (low, high)
        return value

    @field_validator("sim_seconds")
    @classmethod
    def _check_sim_seconds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if low < 0 or high < low:
            raise ValueError("need 0 <= min <= max")
        return value

    @field_validator("replicate_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) URL, e.g. https://api.replicate.com/v1")
        return value.rstrip("/")

    @field_validator("telegram_bot_token")
    @classmethod
    def _check_telegram_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None  # an empty variable means no bot
        if not re.match(TELEGRAM_TOKEN_PATTERN, value.get_secret_value()):
            raise ValueError("not a bot token (BotFather's form is 123456789:AAE...)")
        return value

    @field_validator("telegram_api_base")
    @classmethod
    def _check_telegram_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, e.g. {DEFAULT_TELEGRAM_API_BASE}")
        return value.rstrip("/")

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_telegram(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # A field validator, not a model validator, for the reason given in `_check_generator`.
        if value is not None and value.get_secret_value() == "":
            value = None
        if value is not None and not re.match(TELEGRAM_SECRET_PATTERN, value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
                             " (Telegram's rule; `openssl rand -hex 32` gives one)")
        return value

    @field_validator("generator")
    @classmethod
    def _check_generator(cls, value: str, info: ValidationInfo) -> str:
        # A field validator on the last field, not a model validator: pydantic prints a
        # model validator's whole input in its error, which would put the API token on
        # stderr. Fields that failed their own validation are absent from info.data and
        # already reported, so only settings that are really missing are named here.
        if value == "replicate":
            for name, env in (("replicate_model", "CLAIMFIRST_REPLICATE_MODEL"),
                              ("replicate_api_token", "REPLICATE_API_TOKEN")):
                if name in info.data and not info.data[name]:
                    raise ValueError(f"{env} is required when CLAIMFIRST_GENERATOR=replicate")
        return value

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def connect_url(self) -> str:
        """`database_url` as the stores and migrations connect to it: on PostgreSQL with
        another `db_schema`, that schema first on the search_path (a libpq startup option)."""
        if self.is_sqlite or self.db_schema == "public":
            return self.database_url
        url = make_url(self.database_url)
        # No space after -c: a URL renders it as `+`, which libpq does not decode.
        url = url.update_query_dict({"options": f"-csearch_path={self.db_schema},public"})
        return url.render_as_string(hide_password=False)


def _env_name(field: str) -> str:
    # A setting with aliases is named by its first one (DATABASE_URL, TELEGRAM_BOT_TOKEN, …),
    # the rest by the prefixed field name.
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return f"CLAIMFIRST_{field.upper()}"


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each bad setting as it is spelled in the environment, never its value."""
    return "; ".join(
        f"{_where(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors(include_input=False)
    )


def _where(loc: tuple[int | str, ...]) -> str:
    # Inside a list (the keys of CLAIMFIRST_API_KEYS): which entry (from 1) and which field.
    if not loc:
        return "settings"
    inner = "".join(f" entry {part + 1}" if isinstance(part, int) else f" {part}" for part in loc[1:])
    return _env_name(str(loc[0])) + inner
