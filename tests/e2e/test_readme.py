"""The README, pasted: every shell block runs in order against a fresh Tally, and prints what it says.

The commands run as written, from the repository's directory, with these substitutions only:
the test Tally's ports for 8888 and 50051 (and the settings of its database in the environment, as
`make run` would find them), a local receiver for the example webhook URL (test stacks call only
loopback receivers), and `pip`/`python` from a fresh virtualenv of the user's own (the SDK block).
`curl` fails on HTTP errors (`--fail-with-body`), so a recipe answered 4xx fails the test. The
README's output convention is in tests/support/readme.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.readme import Command, Mismatch, check, commands, readme_commands, shell_blocks, substitute
from tests.support.services import ROOT
from tests.support.stack import TallyProcess, create_database

README = ROOT / "README.md"
ASSIGNMENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=(?:\"[^\"]*\"|'[^']*'|\S+)\s*)+$")
PLACEHOLDER = re.compile(r"<[a-z][a-z _-]*>")
WRITES = re.compile(
    r"-X (POST|PUT|PATCH|DELETE)|/(Create|Ingest|Update|Delete|Resend|Test|Void|Reset)|\b(create|import|revoke|install)\b"
)


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def fresh_tally(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    """A Tally of its own: the quickstart creates fixed names (tokens_total, acme)."""
    url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("readme"), postgres_url=url).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own virtualenv (for `pip install ./sdk/python` and `python`), not the project's .venv."""
    where = tmp_path_factory.mktemp("userenv") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(where)], check=True, timeout=120)
    return where


def new_files() -> set[str]:
    """Untracked files in the checkout, ignored ones included (build/ and *.egg-info are ignored, and
    are what `pip install ./sdk/python` used to leave), except caches Python and the tests write."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    caches = re.compile(r"__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.hypothesis|^\.tally/")
    return {line[3:] for line in out.stdout.splitlines() if line[:2] in ("??", "!!") and not caches.search(line[3:])}


def adapt(text: str, tally: TallyProcess, hook: str) -> str:
    text = re.sub(r"\b(localhost|127\.0\.0\.1):8888\b", f"127.0.0.1:{tally.rest_port}", text)
    text = text.replace("127.0.0.1:50051", tally.grpc_target)
    return text.replace("https://example.com/hook", hook)


def run(command: str, env: dict[str, str], streams: bool) -> tuple[int, str, str]:
    if streams:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 15)
            out, err = process.communicate()
            return 0, out, err
        return process.returncode, out, err
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


def test_readme_blocks_are_found() -> None:
    """The parser sees the blocks the README has (a test that found none would pass vacuously)."""
    runnable, blocks = readme_commands(README)
    assert len(blocks) >= 8
    assert all(block.skip_reason for block in blocks if block.text.startswith("make run"))
    texts = "\n".join(c.text for c in runnable)
    for needle in (
        "api/v1/meters",
        "entitlements/tokens/value",
        "notification/rules",
        "IngestEvents",
        "pip install",
        "tally apikeys",
    ):
        assert needle in texts
    quickstart = commands(shell_blocks(README.read_text())[1])
    assert any(c.expected == ["204"] for c in quickstart)
    assert any("balance" in e for c in quickstart for e in c.expected)


def test_readme_runs_as_written(fresh_tally: TallyProcess, receiver: str, user_env: Path) -> None:
    runnable, _ = readme_commands(README)
    before = new_files()
    env = {**fresh_tally.env(), "TALLY_SERVER": fresh_tally.grpc_target}
    env["PATH"] = f"{user_env / 'bin'}:{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    # `curl -s` exits 0 on a 4xx; a README recipe answered with an error must fail here.
    prelude = ["set -o pipefail", 'curl() { command curl --fail-with-body "$@"; }']
    captures: dict[str, Any] = {}
    for command in runnable:
        text = substitute(adapt(command.text, fresh_tally, receiver), captures)
        where = f"README.md:{command.line}: {command.text[:120]}"
        assert not PLACEHOLDER.search(text), f"{where}\nplaceholder without an earlier output that shows it"
        # make would (re)install the project's virtualenv and start services on fixed ports: a block
        # that runs make is documentation of the developer workflow, marked skip, never run here.
        assert not re.search(r"(^|[;&|(]\s*)make\b", text, re.M), (
            f"{where}\nruns make: mark its block readme-test: skip"
        )
        if ASSIGNMENT.match(text) or re.match(r"^(\.|source) ", text):
            prelude.append(text)
            continue
        deadline = time.monotonic() + 10
        while True:
            code, out, err = run("\n".join([*prelude, text]), env, command.streams)
            failure = f"exit {code}" if code else _mismatch(command, out, captures)
            # A value reflects an ingested event within a second (as the README says): reads may be retried.
            if failure is None or code or WRITES.search(text) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert failure is None, f"{where}\n{failure}\nstdout:\n{out}\nstderr:\n{err}"
    new = new_files() - before
    assert not new, f"the README's commands left files in the checkout: {sorted(new)}"


def _mismatch(command: Command, out: str, captures: dict[str, Any]) -> str | None:
    for expected in command.expected:
        try:
            check(substitute(expected, captures) if not expected.startswith(("{", "[")) else expected, out, captures)
        except Mismatch as error:
            return f"output differs from `# -> {expected}`: {error}"
    return None
