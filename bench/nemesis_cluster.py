"""The processes the nemesis runs and breaks: a PostgreSQL of its own, the stand-in Replicate,
and the services, each a child this process can kill -9, freeze, stop or restart.

Every child is started in a session of its own (`start_new_session`), so a signal to its
process group reaches a service's uvicorn workers too, and `Cluster.close` can end every one of
them on any exit (Ctrl-C, an exception) without touching a process it did not start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# pgserver asks platformdirs for a runtime dir, which containers without XDG_RUNTIME_DIR lack.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
import pgserver  # noqa: E402
import psutil
from pgserver._commands import pg_ctl  # pgserver's own pg_ctl wrapper (runs as its system user)

from service.process import free_port

__all__ = ["Postgres", "StandIn", "Service", "libfaketime", "ROOT", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stand-ins (Replicate, the faulty proxy) live with the tests
# A service starts (migration included) in ~2 s; on two loaded cores, several times that.
START_DEADLINE_SECONDS = 40.0
STOP_DEADLINE_SECONDS = 15.0  # SIGTERM: uvicorn's graceful shutdown, then the runner's 10 s grace
START_ATTEMPTS = 3
STAND_IN_TOKEN = "r8_nemesis_stand_in"
STAND_IN_MODEL = "stand-in/video-model"


def wait_for(condition, *, timeout: float, every: float = 0.1) -> bool:
    """Poll until `condition()` is truthy (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return True
        time.sleep(every)
    return False


class Postgres:
    """pgserver's PostgreSQL in a data directory of our own: stopped with `-m immediate`,
    started again on the same data, or frozen with all its processes."""

    def __init__(self) -> None:
        self.pgdata = Path(tempfile.mkdtemp(prefix="claimfirst-nemesis-pg-"))
        self.server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.frozen = False
        self.stopped = False

    @property
    def socket(self) -> Path:
        info = self.server.get_postmaster_info()
        return Path(info.socket_dir) / f".s.PGSQL.{info.port}"

    @property
    def conninfo(self) -> str:
        """Straight to the server (not through the proxy): what the checker reads with."""
        info = self.server.get_postmaster_info()
        return f"host={info.socket_dir} port={info.port} user=postgres dbname=postgres"

    def stop_immediate(self) -> None:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user, timeout=30)
        self.stopped = True

    def start(self) -> None:
        self.server.ensure_postgres_running()  # same data directory, same socket directory
        self.stopped = False

    def processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(self.server.get_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> None:
        for process in self.processes():  # the postmaster first: it forks nothing unfrozen
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        for process in reversed(self.processes()):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
        self.frozen = False

    def heal(self) -> None:
        if self.frozen:
            self.thaw()
        if self.stopped:
            self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user, timeout=30)
        shutil.rmtree(self.pgdata, ignore_errors=True)


class StandIn:
    """tests/stand_ins/replicate.py as its own process: it outlives every service kill."""

    def __init__(self, workdir: Path, seconds: float, fail_every: int = 0) -> None:
        self.port = free_port()
        self.state_path = workdir / "replicate-state.json"
        self.log = (workdir / "replicate.log").open("wb")
        self.token, self.model = STAND_IN_TOKEN, STAND_IN_MODEL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.stand_ins.replicate", "--port", str(self.port), "--seconds", str(seconds),
             "--fail-every", str(fail_every), "--state", str(self.state_path), "--token", self.token,
             "--model", self.model],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True,
        )
        line = self.process.stdout.readline()  # printed once it listens
        if not line:
            raise RuntimeError("the stand-in Replicate did not start")
        self.base_url = json.loads(line)["base_url"]

    def state(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/_standin/bill", timeout=10).raise_for_status().json()

    def close(self) -> None:
        _end(self.process)
        if self.process.stdout:
            self.process.stdout.close()
        self.log.close()


@dataclass
class Service:
    """`python -m service` on one port: `workers` uvicorn workers behind it when above 1."""

    name: str
    env: dict[str, str]
    log_path: Path
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    skew: str | None = None  # FAKETIME while it runs skewed, else None
    frozen: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, skew: str | None = None) -> None:
        metrics = self.env.get("PROMETHEUS_MULTIPROC_DIR")
        if metrics:  # prometheus-client wants it empty at start; a killed run left its files
            for stale in Path(metrics).glob("*.db"):
                stale.unlink()
        for _ in range(START_ATTEMPTS):
            prefix: list[str] = []
            extra: dict[str, str] = {}
            if skew is not None:
                prefix = ["env", f"LD_PRELOAD={libfaketime()}", f"FAKETIME={skew}"]
                # Monotonic time stays true so the event loop and timeouts behave; only the wall clock lies.
                extra = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [*prefix, sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(self.workers), "--log-level", "warning"],
                    env={**os.environ, **self.env, **extra}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                    start_new_session=True,
                )
            self.skew, self.frozen = skew, False
            if self.wait_healthy(START_DEADLINE_SECONDS):
                return
            self.kill()
        raise RuntimeError(f"service {self.name} did not start; see {self.log_path}")

    def wait_healthy(self, timeout: float) -> bool:
        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError("exited")
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200

        try:
            return wait_for(healthy, timeout=timeout, every=0.2)
        except RuntimeError:
            return False

    def workers_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor); the process itself with one worker."""
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.process.pid).children()
            # multiprocessing's resource tracker is a child too; the workers run uvicorn's target
            return [c.pid for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        return []

    def signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        if self.process is None:
            return
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGKILL)
        self.process.wait(STOP_DEADLINE_SECONDS)
        self.frozen = False

    def terminate(self) -> bool:
        """SIGTERM and wait for a graceful exit; False if it had to be killed."""
        assert self.process is not None
        self.signal_group(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)  # to the supervisor: it stops its workers
        try:
            self.process.wait(STOP_DEADLINE_SECONDS)
            graceful = True
        except subprocess.TimeoutExpired:
            graceful = False
        self.signal_group(signal.SIGKILL)  # nothing of it may linger either way
        self.process.wait(STOP_DEADLINE_SECONDS)
        return graceful

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()
        elif self.process is not None:
            self.signal_group(signal.SIGKILL)  # a worker orphaned by a killed supervisor


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def libfaketime() -> Path:
    """Debian's libfaketime when installed, else built once from the source the `libfaketime`
    wheel (dev extra) vendors, into a cache directory shared by runs."""
    installed = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if installed:
        return installed[0]
    build = Path(tempfile.gettempdir()) / "claimfirst-nemesis-libfaketime"
    library = build / "libfaketime.so.1"
    if library.exists():
        return library
    spec = importlib.util.find_spec("libfaketime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("libfaketime is needed: install the dev extra or Debian's faketime")
    source = Path(next(iter(spec.submodule_search_locations))) / "vendor" / "libfaketime" / "src"
    shutil.copytree(source, build, dirs_exist_ok=True)
    made = subprocess.run(["make", "-s", "libfaketime.so.1"], cwd=build, capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        raise RuntimeError(f"building libfaketime failed: {made.stderr.strip()[-300:]}")
    return library
