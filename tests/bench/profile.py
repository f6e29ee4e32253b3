"""Summarises py-spy's collapsed stacks (`--format raw`, as `BENCH_PROFILE` writes them): the
functions with the most samples of their own (self) and the most samples under them (total).

`.venv/bin/python -m tests.bench.profile FILE [N]`
"""

from __future__ import annotations

import re
import sys
from collections import Counter

_IDLE = re.compile(r"\b(select|epoll_wait|poll|_run_once|wait)\b")


def summarise(path: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = idle = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = [
                frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0].split("/")[-1] + ")"
                if " (" in frame
                else frame
                for frame in stack.split(";")
            ]
            total += count
            if frames and _IDLE.search(frames[-1]):
                idle += count
            own[frames[-1]] += count
            for frame in set(frames):
                under[frame] += count
    out = [f"{path}: {total} samples, {idle} ({idle / max(1, total):.0%}) in a wait/poll leaf"]
    out.append("self:")
    out += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    out.append("total:")
    out += [f"  {n / total:6.1%}  {frame}" for frame, n in under.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
