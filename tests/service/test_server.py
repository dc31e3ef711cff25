"""uvicorn's bounds and worker processes, against real `python -m service` processes."""

from __future__ import annotations

import socket
from collections import Counter
from urllib.parse import urlsplit

import httpx

from tests.service.live import live_service, wait_until
from tests.service.test_concurrency import burst, rows_for_user


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it does not)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_two_workers_answer_on_one_port_and_one_burst_still_wins_once(pg_url: str, tmp_path) -> None:
    with live_service(pg_url, tmp_path, workers=2, sim_seconds=30) as service:
        pids: set[int] = set()

        def both_workers_answered() -> bool:
            # A new connection each time: the kernel hands connections to either worker.
            pids.add(httpx.get(f"{service.url}/stats", timeout=5).json()["pid"])
            return len(pids) == 2

        wait_until(both_workers_answered, timeout=30, what="two distinct worker pids")
        assert service.process.pid not in pids  # workers, not the supervising parent
        responses = burst([service.url], 80)
        codes = Counter(r.status_code for r in responses)
        assert codes == {202: 1, 409: 79}, codes
    assert rows_for_user(pg_url) == 1


# The concurrency limit (requests being answered, and connections waiting for a head) is
# tested with the other hostile clients in test_slow_clients.py.


def test_an_idle_keep_alive_connection_is_closed(sqlite_url: str, tmp_path) -> None:
    with live_service(sqlite_url, tmp_path, keepalive_seconds=1) as service:
        with socket.create_connection(_address(service.url)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            # The answer, then the server's close after a second of silence (recv returns b""),
            # well before uvicorn's default of 5 s would have closed it.
            assert _read_all(sock, timeout=3).startswith(b"HTTP/1.1 200 ")


def test_an_announced_oversized_body_is_413_before_it_is_sent(sqlite_url: str, tmp_path) -> None:
    with live_service(sqlite_url, tmp_path) as service:
        with socket.create_connection(_address(service.url)) as sock:
            sock.sendall(b"POST /create HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 10000000\r\n\r\n" + b'{"tg_user_id": 1, "prompt": "' + b"x" * 1000)
            answer = _read_all(sock)  # only 1 KB of the announced 10 MB was sent
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert answer.endswith(b'{"detail":"Request body too large: at most 65536 bytes are accepted."}')
        assert service.stats()["submitted"] == 0


def test_the_serving_process_freezes_its_startup_objects_out_of_the_collector(tmp_path) -> None:
    # What `python -m service` hands uvicorn; run in its own interpreter, as a worker is.
    import os
    import subprocess
    import sys

    from service.app import GC_YOUNG_THRESHOLD

    script = ("import gc; from service.app import serving_app; serving_app(); "
              "print(gc.get_freeze_count(), gc.get_threshold()[0])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/gc.db"})
    frozen, young = (int(word) for word in done.stdout.split())
    assert frozen > 10_000 and young == GC_YOUNG_THRESHOLD
