"""Log lines: JSON fields, secrets masked, the request id taken or made (service.logs)."""

from __future__ import annotations

import io
import json
import logging
import logging.config

from pydantic import SecretStr

from service import Settings
from service.logs import JsonFormatter, log_config
from tests.service.app_client import drain, running_app

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "r8_provider_token_0123456789"


def configured_logger(settings: Settings) -> tuple[logging.Logger, io.StringIO]:
    """The handler `python -m service` installs, writing to a buffer instead of stderr."""
    config = log_config(settings, "info")
    stream = io.StringIO()
    config["handlers"]["main"] = {**config["handlers"]["main"], "stream": stream}
    config["loggers"] = {"claimfirst.test": {"handlers": ["main"], "level": "INFO", "propagate": False}}
    del config["root"]  # leave the root logger (and pytest's capture) alone
    logging.config.dictConfig(config)
    return logging.getLogger("claimfirst.test"), stream


def test_json_lines_carry_extra_fields_and_mask_every_secret(tmp_path) -> None:
    settings = Settings(database_url="postgresql://claimfirst:hunter2-pass@db.internal:5432/claimfirst",
                        api_keys=KEY, replicate_api_token=SecretStr(TOKEN), log_format="json")
    logger, stream = configured_logger(settings)
    try:
        logger.info("connecting with %s and %s to %s", KEY, TOKEN, "postgresql://claimfirst:hunter2-pass@db",
                    extra={"video_id": 3, "outcome": "ready"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logging.getLogger("claimfirst.test").handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["level"], first["logger"], first["video_id"], first["outcome"]) == ("INFO", "claimfirst.test", 3, "ready")
    assert first["message"] == "connecting with [redacted] and [redacted] to postgresql://claimfirst:***@db"
    assert KEY not in stream.getvalue() and TOKEN not in stream.getvalue() and "hunter2-pass" not in stream.getvalue()
    assert "ValueError: boom" in second["exception"] and "request_id" not in second


def test_text_is_the_default_format() -> None:
    logger, stream = configured_logger(Settings(database_url="sqlite:///x.db", api_keys=KEY))
    try:
        logger.info("key %s", KEY)
    finally:
        logging.getLogger("claimfirst.test").handlers.clear()
    assert stream.getvalue().rstrip().endswith("INFO claimfirst.test: key [redacted]")


def test_a_request_id_is_echoed_or_made_up(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        for unusable in ("x" * 129, "tab\there"):
            made = client.get("/healthz", headers={"X-Request-ID": unusable}).headers["x-request-id"]
            assert made != unusable and len(made) == 32
        assert client.post("/create", json={"tg_user_id": 0, "prompt": "p"}).headers["x-request-id"]


def test_a_queued_generation_logs_its_own_request_id(sqlite_url: str) -> None:
    # One slot: the second generation waits in the queue and is started by the first one's
    # task when it frees the slot, from that task's context.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    runner_log = logging.getLogger("claimfirst.runner")
    level = runner_log.level
    runner_log.addHandler(handler)
    runner_log.setLevel(logging.INFO)
    try:
        with running_app(sqlite_url, max_concurrent_generations=1, sim_seconds="0.2") as client:
            for n, request_id in enumerate(("req-first", "req-queued")):
                answer = client.post("/create", json={"tg_user_id": 1, "prompt": f"prompt {n}"},
                                     headers={"X-Request-ID": request_id})
                assert answer.status_code == 202
            drain(client)
    finally:
        runner_log.removeHandler(handler)
        runner_log.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ready = {line["video_id"]: line["request_id"] for line in lines if line.get("outcome") == "ready"}
    assert ready == {1: "req-first", 2: "req-queued"}


def test_one_redaction_for_urls_and_secret_parameters() -> None:
    from service.redact import redact_text

    cases = {
        "postgresql://app:hunter2@db:5432/x": "postgresql://app:***@db:5432/x",
        "postgresql:///x?host=/run&password=hunter2&sslmode=require": "postgresql:///x?host=/run&password=***&sslmode=require",
        "failed: postgresql://a:p@ss@h/x?sslpassword=k&Token=t end": "failed: postgresql://a:***@h/x?sslpassword=***&Token=*** end",
        "host=db password='two words' user=x": "host=db password=*** user=x",
        "user@example.com wrote a=b": "user@example.com wrote a=b",
    }
    assert {text: redact_text(text) for text in cases} == cases
