"""The repository's top level holds what the README's layout names, and nothing else.

A file saved at the root by accident (an editor buffer, a scratch copy of a module: one such copy
of adapters/metrics.py once landed on main unnoticed) is caught here rather than shipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Directories of the layout (README "Architecture") and the files the tools read from the root.
TOP_LEVEL = {
    ".ci",
    ".gitignore",
    "Makefile",
    "README.md",
    "adapters",
    "alembic.ini",
    "buf.gen.yaml",
    "buf.yaml",
    "config.example.yaml",
    "console",
    "constraints.txt",
    "docs",
    "domain",
    "envoy",
    "gen",
    "k8s",
    "migrations",
    "proto",
    "pyproject.toml",
    "sdk",
    "server",
    "tests",
    "tools",
    "workers",
}


def test_the_top_level_holds_only_the_layout() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    top = {path.split("/", 1)[0] for path in tracked if path}
    assert top, "git ls-files listed nothing: run the suite from a git checkout"
    unexpected = sorted(top - TOP_LEVEL)
    assert not unexpected, f"unexpected entries at the repository root (misplaced or stray files?): {unexpected}"
