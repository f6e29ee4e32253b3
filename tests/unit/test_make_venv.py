"""The Makefile's virtualenv rules: which Python it takes, and when it rebuilds a .venv instead of
reusing it (tools/venv-problem). Real virtualenvs in a temporary directory; make only prints (-n)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = ROOT / "tools" / "venv-problem"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def problem(venv: Path, wanted: str = "") -> str:
    result = subprocess.run([str(PROBLEM), str(venv), wanted], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def make_n(*args: str) -> subprocess.CompletedProcess[str]:
    # Not the variables of a make this test may run under (`make unit` passes PYTHON and VENV down).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "VENV")}
    return subprocess.run(["make", "-n", *args, "run"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("venvs") / "ok"
    # Without pip (quick); the script pip would install, with the shebang venv writes, stands in.
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    script = where / "bin" / "pip"
    script.write_text(f"#!{where}/bin/python\nimport sys\n")
    script.chmod(0o755)
    return where


def test_a_sound_venv_is_reused(venv: Path) -> None:
    assert problem(venv) == ""
    assert problem(venv, VERSION) == ""
    assert problem(venv.parent / "absent") == ""  # nothing to reuse: simply made


def test_another_python_than_asked_for_is_rebuilt(venv: Path) -> None:
    other = "3.13" if VERSION != "3.13" else "3.12"
    assert problem(venv, other) == f"it has Python {VERSION} and PYTHON asks for {other}"


def test_a_copied_venv_is_rebuilt(venv: Path) -> None:
    copy = venv.parent / "copied"
    shutil.copytree(venv, copy, symlinks=True)
    assert problem(copy) == f"its scripts belong to {venv} (a copied or moved .venv)"
    plan = make_n(f"VENV={copy}")
    assert plan.returncode == 0, plan.stderr
    assert f"rebuilding {copy}: its scripts belong to {venv}" in plan.stdout
    assert f"rm -rf {copy}" in plan.stdout


def test_a_venv_whose_python_is_gone_is_rebuilt(venv: Path) -> None:
    broken = venv.parent / "broken"
    shutil.copytree(venv, broken, symlinks=True)
    for name in ("python", "python3", f"python{VERSION}"):
        link = broken / "bin" / name
        if link.is_symlink() or link.exists():
            link.unlink()
            link.symlink_to(venv.parent / "no-such-python")
    assert problem(broken) == "its Python does not run"


def test_python_that_does_not_run_is_refused() -> None:
    plan = make_n("PYTHON=/nonexistent/python3.12")
    assert plan.returncode != 0
    assert "PYTHON=/nonexistent/python3.12 does not run" in plan.stderr


def test_an_up_to_date_venv_is_left_alone(venv: Path) -> None:
    (venv / ".installed-run").touch()
    plan = make_n(f"VENV={venv}", f"PYTHON={BASE_PYTHON}")
    assert plan.returncode == 0, plan.stderr
    assert "rebuilding" not in plan.stdout and "pip install" not in plan.stdout
    # Before it, `run` builds the console (make console) where npm is installed; nothing of the venv.
    assert plan.stdout.strip().splitlines()[-1] == f"{venv}/bin/tally serve"
