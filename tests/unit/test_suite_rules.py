"""Rules the suite keeps about itself, checked on its own source.

A test that skips itself tells nothing: a missing service or engine goes through
tests/support/services.py's `require` / `require_module` (a failure under TALLY_REQUIRE_SERVICES=1,
which .ci/run sets), and a test that cannot run on CI by design is deselected by a marker
(k8s_live), never skipped. .ci/run also fails on any skip at run time; this catches the source.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ALLOWED = {TESTS / "support" / "services.py"}  # where `require` decides between skip and fail
SKIPPING = re.compile(r"pytest\.importorskip\(|pytest\.skip\(|pytest\.mark\.skip|pytest\.mark\.xfail|pytest\.xfail\(")


def test_no_test_skips_itself() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in ALLOWED and path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if SKIPPING.search(line)
    ]
    assert not offenders, "use tests.support.services.require/require_module instead:\n" + "\n".join(offenders)
