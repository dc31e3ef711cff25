"""A TCP proxy between services and PostgreSQL that a test or the nemesis switches between faults.

    proxy = FaultyProxy(upstream_socket)      # PostgreSQL's Unix socket (pgserver listens on no port)
    proxy.start(); proxy.port                 # the services' DATABASE_URL points here
    proxy.pass_through()                      # forward everything
    proxy.latency(3.0)                        # every round trip ~3 s slower (half each way)
    proxy.blackhole()                         # accept, forward nothing, hold every byte, until healed
    proxy.reset()                             # abort every connection now (RST), then pass through
    proxy.stop()

It runs its own event loop in a thread, so neither the traffic nor the schedule (which block
on pg_ctl and process waits) can add delay the schedule did not ask for. A blackhole is a
partition, not a loss: held bytes go on when it heals, as TCP's retransmissions would deliver
them; whoever gave up on the connection meanwhile closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

__all__ = ["FaultyProxy"]

CHUNK = 64 * 1024
# The loop thread's start and stop are waited on, bounded: a proxy that cannot bind is fatal.
THREAD_DEADLINE_SECONDS = 10.0


class FaultyProxy:
    def __init__(self, upstream_socket: Path, host: str = "127.0.0.1") -> None:
        self.upstream = upstream_socket
        self.host = host
        self.port = 0
        self.mode = "pass"
        self._delay = 0.0  # one way: half the added round-trip latency
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None  # set unless blackholed
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nemesis-proxy", daemon=True)

    # -- control, from any thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(THREAD_DEADLINE_SECONDS)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(THREAD_DEADLINE_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(THREAD_DEADLINE_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()

    def retarget(self, upstream_socket: Path) -> None:
        """New connections go to this socket (PostgreSQL restarted elsewhere)."""
        self.upstream = upstream_socket

    def pass_through(self) -> None:
        self._set("pass", 0.0, blackholed=False)

    def latency(self, round_trip_seconds: float) -> None:
        self._set("latency", round_trip_seconds / 2, blackholed=False)

    def blackhole(self) -> None:
        self._set("blackhole", 0.0, blackholed=True)

    def reset(self) -> None:
        """Abort every open connection (both sides see a reset), then pass through."""
        self._set("pass", 0.0, blackholed=False)
        self._loop.call_soon_threadsafe(self._abort_all)

    @property
    def connections(self) -> int:
        return len(self._transports) // 2

    # -- the loop's side -------------------------------------------------------------------

    def _set(self, mode: str, delay: float, *, blackholed: bool) -> None:
        def apply() -> None:
            self.mode, self._delay = mode, delay
            assert self._open is not None
            self._open.clear() if blackholed else self._open.set()

        self._loop.call_soon_threadsafe(apply)

    async def _listen(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        self._abort_all()
        assert self._open is not None
        self._open.set()  # release pumps parked on the gate so their tasks end

    def _abort_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._transports.add(client_w.transport)
        assert self._open is not None
        try:
            await self._open.wait()  # blackholed: the connection is accepted, nothing more
            up_r, up_w = await asyncio.open_unix_connection(str(self.upstream))
        except OSError:  # PostgreSQL is down: the client sees its connection closed
            self._drop(client_w)
            return
        self._transports.add(up_w.transport)
        try:
            await asyncio.gather(self._pump(client_r, up_w), self._pump(up_r, client_w))
        finally:
            self._drop(client_w)
            self._drop(up_w)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        assert self._open is not None
        try:
            while data := await source.read(CHUNK):
                await self._open.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(sink)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._transports.discard(writer.transport)
        writer.close()
