"""Child processes that die with Tally: Envoy and the embedded PostgreSQL.

The kernel's parent-death signal (PR_SET_PDEATHSIG) stops a child even when Tally is killed with
SIGKILL. It is set by util-linux's `setpriv --pdeathsig`, which then execs the child, rather than
by a `preexec_fn`: a preexec_fn makes subprocess fork the whole multi-threaded process and run
Python in the child, where a lock held by another thread at the fork (gRPC's, the dynamic
loader's) can hang or abort it. Envoy was seen to abort at start so, once in about fifteen starts.
Where setpriv is missing (not Linux, or a minimal image) the preexec_fn is the fallback.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import sys
from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1


def dying_with_parent(argv: Sequence[str], sig: signal.Signals) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) for Popen: the child gets `sig` when Tally dies. The setting is made in
    the child after any user switch Popen does (a switch would reset it) and survives the exec."""
    if sys.platform != "linux":
        return list(argv), None
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", sig.name.removeprefix("SIG"), "--", *argv], None

    def set_parent_death_signal() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return list(argv), set_parent_death_signal
