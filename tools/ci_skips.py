"""CI's count of skipped tests, from pytest's JUnit XML report: prints it, fails when it is not 0.

On CI every test must run (a suite that passes by skipping tells nothing); .ci/run calls this after
`make test`. A test that cannot run on CI by design is deselected by a marker, never skipped.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(report: Path) -> int:
    if not report.exists():
        print(f"CI: no test report at {report} (the suite did not run)")
        return 1
    root = ET.parse(report).getroot()  # noqa: S314  (pytest's own report, written by this run)
    cases = list(root.iter("testcase"))
    skipped = [
        f"{case.get('classname')}::{case.get('name')}: {skip.get('message', '')}"
        for case in cases
        for skip in case.findall("skipped")
    ]
    print(f"CI: {len(cases)} tests, {len(skipped)} skipped")
    for line in skipped:
        print(f"  skipped: {line}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
