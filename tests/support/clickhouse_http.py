"""A ClickHouse HTTP endpoint for the test suite, in front of a chDB data directory.

No ClickHouse server installs on these machines, yet production reaches ClickHouse through
clickhouse-connect's HTTP client. This server speaks the part of ClickHouse's HTTP interface that
client uses, so the event-store adapter's HTTP code path (request encoding, bound parameters,
settings, compression, Native blocks both ways, error decoding) runs for real in tests. It is a test
fixture, not part of the product; docs/clickhouse-http-endpoint.md says what it covers and what only
a real server shows.

What it implements (ClickHouse's documented HTTP interface):
- GET/HEAD `/` and `/ping` answer `Ok.`; `/replicas_status` is not served.
- The statement comes from the `query` URL parameter, the POST body, or both (the parameter first,
  then the body, as ClickHouse concatenates them). An INSERT whose text ends in `FORMAT <name>` takes
  the rest of the body as its data, in that format (clickhouse-connect sends Native blocks); the data
  is handed to chDB through `FROM INFILE` on a temporary file.
- The same in a multipart form (`query`, `param_<name>` fields), which clickhouse-connect uses when
  they would make the URL too long; files in the form (external data) are refused.
- `param_<name>` URL parameters bind `{name:Type}` placeholders (chDB parses the text values exactly
  as a server does); `database` selects the database; `default_format` the output format of a
  statement without a FORMAT clause (else TabSeparated); `query_id` is echoed.
- Any other URL parameter is a setting, applied to that request only (SET before, SET ... = DEFAULT
  after; an unknown setting fails with ClickHouse's UNKNOWN_SETTING error). Transport parameters
  (`session_id`, `compress`, `decompress`, `enable_http_compression`, `wait_end_of_query`, ...) are
  accepted and not treated as settings.
- Request bodies with `Content-Encoding` gzip, deflate, zstd or lz4 (frame) are decompressed, also
  with chunked transfer encoding; responses are compressed with the first of zstd, lz4, gzip,
  deflate the client accepts (`enable_http_compression`, on by default as chDB's system.settings
  reports it; a server's default is off and the client then sends `enable_http_compression=1`).
- Errors as a server reports them: an HTTP status by error kind, the `X-ClickHouse-Exception-Code`
  header, and a `Code: N. DB::Exception: ... (NAME) (version ...)` text body.
- `X-ClickHouse-Summary` (read/written rows and bytes), `X-ClickHouse-Query-Id`,
  `X-ClickHouse-Format`, `X-ClickHouse-Timezone` and `X-ClickHouse-Server-Display-Name` headers.
- Optional user and password (`--user`, `--password`): Basic auth or the `X-ClickHouse-User` /
  `X-ClickHouse-Key` headers; a mismatch is error 516 AUTHENTICATION_FAILED with HTTP 403.
- `KILL QUERY WHERE [initial_]query_id = {p:String} [SYNC|ASYNC]` on the statements this endpoint
  has read and not yet answered: one not yet started fails with QUERY_WAS_CANCELLED (394); one that
  chDB is running is not interrupted (chDB cannot be), and SYNC waits until it has finished, as a
  server's SYNC waits for a query past stopping.

Fault injection for tests, not ClickHouse's (paths under `/_test/`): `POST /_test/hold?prefix=P`
makes statements whose query_id starts with P wait before starting (until released, killed, or
60 s), as a busy server would hold them; `POST /_test/release` ends the hold; `GET
/_test/running?prefix=P` counts the statements with such ids read and not yet answered.

Not implemented (a real server is needed): sessions (`session_id` does not keep settings or temporary
tables between requests), progress headers, exceptions in the middle of a streamed response
(responses are buffered whole), external data (files in a multipart form), concurrency (statements run one at a time:
chDB allows one process per data directory, and this server is that process), replication, clusters.

Run: `python -m tests.support.clickhouse_http --data-dir DIR --port PORT [--user U --password P]`.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import lz4.frame
from backports import zstd

VERSION = "chdb-http-endpoint"

# URL parameters that steer the HTTP transport rather than being ClickHouse settings.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "enable_http_compression",
        "http_zlib_compression_level",
        "wait_end_of_query",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "buffer_size",
        "user",
        "password",
        "quota_key",
        "client_protocol_version",
    }
)

# An INSERT with its data after the format name: everything after one whitespace character is data.
_INSERT_DATA = re.compile(rb"^\s*INSERT\s.*?\bFORMAT\s+(\w+)[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR = re.compile(r"Code:\s*(\d+)\.")
_ERROR_NAME = re.compile(r"\(([A-Z_]+)\)\s*$")
_KILL_BY_ID = re.compile(
    r"^\s*KILL\s+QUERY\s+WHERE\s+(?:initial_)?query_id\s*=\s*\{(\w+):String\}\s*(SYNC|ASYNC)?\s*;?\s*$", re.IGNORECASE
)
HOLD_LIMIT_SECONDS = 60.0

# ClickHouse answers most errors with 500; these kinds with the status its HTTP handler uses.
_STATUS_BY_CODE = {
    # The query itself is wrong: 400.
    **dict.fromkeys(
        (6, 27, 36, 41, 43, 46, 47, 53, 62, 69, 70, 72, 115, 117, 130, 184, 190, 215, 344, 386, 456, 457), 400
    ),
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    159: 504,  # TIMEOUT_EXCEEDED
    192: 403,  # UNKNOWN_USER
    193: 403,  # WRONG_PASSWORD
    497: 403,  # ACCESS_DENIED
    516: 403,  # AUTHENTICATION_FAILED
}


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


class ClickHouseError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _decompress(data: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        return zstd.decompress(data)
    if encoding == "lz4":
        return bytes(lz4.frame.decompress(data))
    raise ClickHouseError(36, f"DB::Exception: Unknown HTTP content encoding: {encoding}. (BAD_ARGUMENTS)")


def _compress(data: bytes, accept: str) -> tuple[bytes, str | None]:
    wanted = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if "zstd" in wanted:
        return zstd.compress(data), "zstd"
    if "lz4" in wanted:
        return lz4.frame.compress(data), "lz4"
    if "gzip" in wanted:
        return gzip.compress(data), "gzip"
    if "deflate" in wanted:
        return zlib.compress(data), "deflate"
    return data, None


class Statements:
    """The statements read and not yet answered, by query id: what KILL QUERY acts on, and what the
    tests' hold (fault injection) keeps from starting."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.running: dict[str, int] = {}
        self.killed: set[str] = set()
        self.held: str | None = None  # a query_id prefix

    def begin(self, query_id: str) -> None:
        """Registers a statement; a held one waits for the release, a kill, or the hold's limit."""
        with self.changed:
            self.running[query_id] = self.running.get(query_id, 0) + 1
            deadline = time.monotonic() + HOLD_LIMIT_SECONDS
            while (
                self.held is not None
                and query_id.startswith(self.held)
                and query_id not in self.killed
                and time.monotonic() < deadline
            ):
                self.changed.wait(deadline - time.monotonic())

    def check(self, query_id: str) -> None:
        """Called as the statement starts: a statement killed before that does not run."""
        with self.changed:
            if query_id in self.killed:
                raise ClickHouseError(394, "DB::Exception: Query was cancelled. (QUERY_WAS_CANCELLED)")

    def end(self, query_id: str) -> None:
        with self.changed:
            self.running[query_id] -= 1
            if not self.running[query_id]:
                del self.running[query_id]
                self.killed.discard(query_id)
            self.changed.notify_all()

    def kill(self, query_id: str, sync: bool) -> bytes:
        with self.changed:
            if query_id not in self.running:
                return b""
            self.killed.add(query_id)
            self.changed.notify_all()
            while sync and query_id in self.running:
                self.changed.wait()
        return f"{'finished' if sync else 'waiting'}\t{query_id}\n".encode()

    def hold(self, prefix: str | None) -> None:
        with self.changed:
            self.held = prefix
            self.changed.notify_all()

    def count(self, prefix: str) -> int:
        with self.changed:
            return sum(n for query_id, n in self.running.items() if query_id.startswith(prefix))


class Engine:
    """The chDB connection and the per-request emulation of a server's statement handling."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.conn = chdb.connect(str(data_dir))
        self.lock = threading.Lock()
        self.spool = Path(tempfile.mkdtemp(prefix="chdb-http-"))
        self.statements = Statements()

    def _query(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> Any:
        try:
            return self.conn.query(sql, fmt, params=params or {})
        except Exception as error:  # chDB raises its own error types carrying the server's text
            text = str(error)
            match = _ERROR.search(text)
            raise ClickHouseError(int(match.group(1)) if match else 1001, text) from None

    def execute(
        self,
        statement: bytes,
        params: dict[str, str],
        settings: dict[str, str],
        database: str,
        default_format: str,
        query_id: str,
    ) -> tuple[bytes, str, dict[str, int]]:
        kill = _KILL_BY_ID.match(statement.decode(errors="replace"))
        if kill is not None and kill.group(1) in params:
            sync = (kill.group(2) or "ASYNC").upper() == "SYNC"
            return self.statements.kill(params[kill.group(1)], sync), "TabSeparated", {}
        insert = _INSERT_DATA.match(statement)
        with self.lock:
            self.statements.check(query_id)
            if database and database != "default":
                self._query(f"USE `{database.replace('`', '')}`", "TabSeparated")
            else:
                self._query("USE default", "TabSeparated")
            applied: list[str] = []
            try:
                for name, value in settings.items():
                    if not _SETTING_NAME.match(name):
                        raise ClickHouseError(115, f"DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
                    # A server takes a URL setting's text as it is; a bound parameter's text is
                    # read escaped, so escape it (a format schema sent inline has newlines).
                    self._query(f"SET {name} = {{v:String}}", "TabSeparated", {"v": _escaped(value)})
                    applied.append(name)
                if insert is not None:
                    return self._insert(statement, insert, params)
                sql = statement.decode()
                trailing = _TRAILING_FORMAT.search(sql)
                fmt = trailing.group(1) if trailing else (default_format or "TabSeparated")
                result = self._query(sql, fmt, params)
                return result.bytes() or b"", fmt, _summary(result)
            finally:
                for name in applied:
                    self._query(f"SET {name} = DEFAULT", "TabSeparated")

    def _insert(
        self, statement: bytes, insert: re.Match[bytes], params: dict[str, str]
    ) -> tuple[bytes, str, dict[str, int]]:
        head = statement[: insert.start(1)].decode().rstrip()
        head = re.sub(r"\bFORMAT\s*$", "", head, flags=re.IGNORECASE).rstrip()
        fmt = insert.group(1).decode()
        data = statement[insert.end() :]
        path = self.spool / f"{uuid.uuid4().hex}.bin"
        path.write_bytes(data)
        try:
            # A SETTINGS clause of the statement goes after FROM INFILE (chDB's grammar for it).
            settings = ""
            found = re.search(r"\bSETTINGS\b(.*)$", head, re.IGNORECASE | re.DOTALL)
            if found:
                settings = f" SETTINGS {found.group(1).strip()}"
                head = head[: found.start()].rstrip()
            result = self._query(f"{head} FROM INFILE '{path}'{settings} FORMAT {fmt}", "TabSeparated", params)
        finally:
            path.unlink(missing_ok=True)
        return b"", fmt, _summary(result)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            raise ClickHouseError(
                36, "DB::Exception: external data (files in the form) is not emulated by this endpoint. (BAD_ARGUMENTS)"
            )
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode()
    return fields


def _summary(result: Any) -> dict[str, int]:
    def number(name: str) -> int:
        value = getattr(result, name, None)
        try:
            return int(value() if callable(value) else value or 0)
        except (TypeError, ValueError):
            return 0

    return {
        "read_rows": number("rows_read"),
        "read_bytes": number("bytes_read"),
        "written_rows": number("rows_written"),
        "written_bytes": number("bytes_written"),
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "ClickHouse"
    protocol_version = "HTTP/1.1"
    engine: Engine
    user: str | None = None
    password: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("CHDB_HTTP_LOG"):
            encodings = f"accept={self.headers.get('Accept-Encoding')} content={self.headers.get('Content-Encoding')}"
            super().log_message(format + " %s", *args, encodings)

    def do_HEAD(self) -> None:
        self._send(200, b"", {"Content-Type": "text/plain; charset=UTF-8"})

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        self._handle(self._body())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return body

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        query_id = ""
        try:
            pairs = parse_qsl(url.query, keep_blank_values=True)
            args = dict(pairs)
            query_id = args.get("query_id") or str(uuid.uuid4())
            self._authenticate(args)
            if url.path in ("/ping", "/") and "query" not in args and not body:
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if url.path.startswith("/_test/"):
                self._fault_injection(url.path, args)
                return
            if url.path not in ("/", ""):
                raise ClickHouseError(1001, f"DB::Exception: There is no handle {url.path}. (UNSUPPORTED_METHOD)")
            body = _decompress(body, self.headers.get("Content-Encoding", ""))
            content_type = self.headers.get("Content-Type", "")
            if content_type.lower().startswith("multipart/form-data"):
                # clickhouse-connect moves the statement and bound parameters into a form when they
                # would make the URL too long (a large IN list, say).
                fields = _form_fields(content_type, body)
                pairs += [(k, v) for k, v in fields.items() if k != "query"]
                args.update(fields)
                body = b""
            if args.get("decompress") == "1":
                raise ClickHouseError(
                    36,
                    "DB::Exception: ClickHouse's native block compression (decompress=1) is not emulated. (BAD_ARGUMENTS)",
                )
            statement = (args["query"].encode() + (b"\n" + body if body else b"")) if "query" in args else body
            if not statement.strip():
                raise ClickHouseError(62, "DB::Exception: Empty query. (SYNTAX_ERROR)")
            params = {k.removeprefix("param_"): v for k, v in pairs if k.startswith("param_")}
            settings = {k: v for k, v in pairs if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
            statements = self.engine.statements
            statements.begin(query_id)
            try:
                data, fmt, summary = self.engine.execute(
                    statement,
                    params,
                    settings,
                    args.get("database", "default"),
                    args.get("default_format", ""),
                    query_id,
                )
            finally:
                statements.end(query_id)
        except ClickHouseError as error:
            self._error(error, query_id)
            return
        except Exception as error:  # a bug here must reach the client as a server error, not a hang
            self._error(ClickHouseError(1001, f"DB::Exception: {error!r}. (STD_EXCEPTION)"), query_id)
            return
        headers = {
            "Content-Type": "text/plain; charset=UTF-8"
            if fmt.startswith(("TabSeparated", "TSV", "CSV"))
            else ("application/json; charset=UTF-8" if fmt.startswith("JSON") else "application/octet-stream"),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Summary": json.dumps({k: str(v) for k, v in summary.items()}),
        }
        # chDB's system.settings (which the client reads through this endpoint) has it on by default.
        if args.get("enable_http_compression", "1") == "1" and data:
            data, encoding = _compress(data, self.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        self._send(200, data, headers, query_id)

    def _fault_injection(self, path: str, args: dict[str, str]) -> None:
        statements = self.engine.statements
        if path == "/_test/hold":
            statements.hold(args["prefix"])
        elif path == "/_test/release":
            statements.hold(None)
        elif path == "/_test/running":
            self._send(200, f"{statements.count(args['prefix'])}\n".encode(), {"Content-Type": "text/plain"})
            return
        else:
            raise ClickHouseError(1001, f"DB::Exception: There is no handle {path}. (UNSUPPORTED_METHOD)")
        self._send(200, b"Ok.\n", {"Content-Type": "text/plain"})

    def _authenticate(self, args: dict[str, str]) -> None:
        if self.user is None:
            return
        user = self.headers.get("X-ClickHouse-User") or args.get("user")
        password = self.headers.get("X-ClickHouse-Key") or args.get("password") or ""
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if user != self.user or password != (self.password or ""):
            raise ClickHouseError(
                516,
                f"DB::Exception: {user or 'default'}: Authentication failed: password is incorrect, or there is no "
                "user with such name. (AUTHENTICATION_FAILED)",
            )

    def _error(self, error: ClickHouseError, query_id: str) -> None:
        message = error.message
        if not message.startswith("Code:"):
            message = f"Code: {error.code}. {message}"
        name = _ERROR_NAME.search(message)
        body = f"{message} (version {VERSION})\n".encode()
        if name is None:
            body = f"{message} (UNKNOWN) (version {VERSION})\n".encode()
        self._send(
            _STATUS_BY_CODE.get(error.code, 500),
            body,
            {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(error.code)},
            query_id,
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str], query_id: str = "") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if query_id:
            self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Timezone", "UTC")
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def serve(
    data_dir: Path, host: str, port: int, user: str | None = None, password: str | None = None
) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"engine": Engine(data_dir), "user": user, "password": password})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    # chDB keeps format schemas sent as text (meter queries' Protobuf output) under the working
    # directory, where a server has its own format_schemas directory: here, the data directory.
    args.data_dir = Path(args.data_dir).resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.data_dir)
    server = serve(args.data_dir, args.host, args.port, args.user, args.password)
    # SIGTERM ends the process like Ctrl-C; chDB's MergeTree data is safe against either.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
