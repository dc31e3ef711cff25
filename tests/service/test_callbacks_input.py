"""callback_url at the door: refused with 422 and nothing written; the signature and payload
against the Standard Webhooks spec; the address checked again at delivery."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from service import Settings
from service.callbacks.deliverer import payload, retry_delay
from service.callbacks.urls import check_callback_url, host_allowed, resolve_target
from service.errors import InvalidRequest
from service.stores.models import IdempotencyKey, VideoCallback, VideoClaim
from service.stores.outbox import DueCallback
from tests.service.app_client import running_app, runtime, video_count
from tests.service.receiver import new_secret

SECRET = new_secret()
HOOKS = {"callback_hosts": "hooks.example.com,*.bots.example.org", "callback_secret": SECRET}

REFUSED = {
    "http": ("http://hooks.example.com/x", "must be an https URL"),
    "host not listed": ("https://evil.example.net/x", "not in CLAIMFIRST_CALLBACK_HOSTS"),
    "the wildcard's own domain": ("https://bots.example.org/x", "not in CLAIMFIRST_CALLBACK_HOSTS"),
    "a suffix that is not a subdomain": ("https://xbots.example.org/x", "not in CLAIMFIRST_CALLBACK_HOSTS"),
    "credentials": ("https://user:pw@hooks.example.com/x", "may not hold credentials"),
    "not a URL": ("hooks.example.com", "must be an https URL"),
    "no host": ("https:///x", "no valid host"),
    "bad port": ("https://hooks.example.com:99999/x", "not a URL"),
}


@pytest.mark.parametrize(("url", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_callback_url_is_422_and_writes_nothing(db_url: str, url: str, message: str) -> None:
    with running_app(db_url, **HOOKS) as client:
        response = client.post("/create", json={"tg_user_id": 1, "prompt": "hi", "callback_url": url},
                               headers={"Idempotency-Key": "k-1"})
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"]
        assert runtime(client).runner.stats.submitted == 0
        assert [video_count(client, m) for m in (VideoClaim, VideoCallback, IdempotencyKey)] == [0, 0, 0]
        assert video_count(client) == 0


def test_without_allowed_hosts_every_callback_url_is_refused(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        response = client.post("/create", json={"tg_user_id": 1, "prompt": "hi",
                                                "callback_url": "https://hooks.example.com/x"})
        assert response.status_code == 422
        assert "CLAIMFIRST_CALLBACK_HOSTS is empty" in response.json()["detail"]
        assert video_count(client) == 0


def test_an_allowed_callback_url_is_kept_with_the_claim(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60", **HOOKS) as client:
        answer = client.post("/create", json={"tg_user_id": 1, "prompt": "hi",
                                              "callback_url": "https://a.bots.example.org/done"})
        assert answer.status_code == 202
        video = client.get(f"/videos/{answer.json()['video_id']}").json()
        assert video["callback"] == {"state": "pending", "event": None, "attempts": 0, "last_error": None,
                                     "delivered_at": None}
        plain = client.post("/create", json={"tg_user_id": 1, "prompt": "another"}).json()
        assert client.get(f"/videos/{plain['video_id']}").json()["callback"] is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "[::ffff:10.0.0.1]",
                                     "0.0.0.0"])
def test_private_and_loopback_addresses_need_the_explicit_setting(address: str) -> None:
    settings = Settings(callback_hosts=address, callback_secret=SECRET)
    with pytest.raises(InvalidRequest, match="not public"):
        check_callback_url(f"https://{address}/x", settings)


def test_loopback_allowed_only_when_asked_and_link_local_never() -> None:
    settings = Settings(callback_hosts="127.0.0.1,169.254.169.254,localhost", callback_secret=SECRET,
                        callback_allow_loopback=True)
    assert check_callback_url("http://127.0.0.1:9/x", settings)
    assert check_callback_url("https://localhost/x", settings)
    with pytest.raises(InvalidRequest, match="not public"):
        check_callback_url("http://169.254.169.254/latest/meta-data", settings)
    with pytest.raises(InvalidRequest, match="loopback"):
        check_callback_url("https://localhost/x", Settings(callback_hosts="localhost", callback_secret=SECRET))


def test_a_name_resolving_inside_is_refused_at_delivery() -> None:
    # The machine's own name is listed and passes at /create (a name is not resolved there),
    # but it resolves to a loopback or private address: the delivery refuses it.
    name = socket.gethostname().lower()
    settings = Settings(callback_hosts=name, callback_secret=SECRET)
    assert check_callback_url(f"https://{name}/x", settings)
    with pytest.raises(InvalidRequest, match="not public|cannot resolve"):
        asyncio.run(resolve_target(f"https://{name}/x", settings))
    # The allowlist is read again at delivery: a host removed since is refused.
    with pytest.raises(InvalidRequest, match="not in CLAIMFIRST_CALLBACK_HOSTS"):
        asyncio.run(resolve_target("https://127.0.0.1/x", Settings(callback_hosts="hooks.example.com",
                                                                   callback_secret=SECRET)))


def test_a_checked_target_connects_to_the_address_and_names_the_host() -> None:
    settings = Settings(callback_hosts="localhost", callback_secret=SECRET, callback_allow_loopback=True)
    target = asyncio.run(resolve_target("https://localhost:8443/a/b?c=1", settings))
    assert target.host == "localhost" and target.address in ("127.0.0.1", "::1")
    assert target.url in ("https://127.0.0.1:8443/a/b?c=1", "https://[::1]:8443/a/b?c=1")


def test_host_allowlist_matching() -> None:
    allowed = ("hooks.example.com", "*.example.org")
    assert host_allowed("HOOKS.example.com.", allowed)
    assert host_allowed("a.b.example.org", allowed)
    assert not host_allowed("example.org", allowed)
    assert not host_allowed("hooks.example.com.evil.net", allowed)


def test_the_signature_is_the_specs() -> None:
    # The spec's own example (standard-webhooks/spec, "Signature scheme"), signed by the
    # package the deliverer uses and by hand.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body) == expected
    key = base64.b64decode(secret.removeprefix("whsec_"))
    by_hand = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(by_hand).decode() == expected


def test_the_payload_is_the_same_bytes_every_time() -> None:
    due = DueCallback(5, "https://h/x", "video.ready", "msg_1", "https://v/5.mp4", None,
                      datetime(2026, 12, 5, 1, 2, 3, 456000, tzinfo=UTC), 3, 42)
    assert payload(due) == payload(due) == (
        b'{"type":"video.ready","timestamp":"2026-12-05T01:02:03.456000Z","data":{"video_id":5,'
        b'"status":"ready","video_url":"https://v/5.mp4","error":null,"tg_user_id":42}}')


def test_retries_back_off_with_jitter_up_to_the_cap() -> None:
    for attempts, ceiling in ((1, 5), (2, 10), (3, 20), (12, 3600), (500, 3600)):
        delay = retry_delay(attempts, 5, 3600).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


def test_settings_refuse_hosts_without_a_secret_and_a_weak_secret() -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="required when CLAIMFIRST_CALLBACK_HOSTS"):
        Settings(callback_hosts="hooks.example.com")
    with pytest.raises(ValidationError, match="24 to 64 random bytes"):
        Settings(callback_hosts="hooks.example.com", callback_secret="whsec_" + base64.b64encode(b"short").decode())
