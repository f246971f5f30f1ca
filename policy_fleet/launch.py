"""A replica's process: `policy-server` with its flags, tied to the Ray actor that started it.

`python -m policy_fleet.launch FLAGS` is the `policy-server` command (the same
entry point, `policy_server.cli`), plus one thing: it dies with the Ray actor
that started it. A lost node, or a killed actor, takes its server with it,
so no orphan keeps answering from a node the cluster counts as gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_WATCH_INTERVAL = 0.2


def die_with_parent() -> None:
    """SIGKILL this process when its parent (the Ray actor's worker) is gone."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the watcher below still works
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_INTERVAL)
        os.kill(os.getpid(), signal.SIGKILL)

    if parent == 1:  # started orphaned: the actor is gone already
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    die_with_parent()
    from policy_server.cli import main as serve  # pylint: disable=import-outside-toplevel

    return serve(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
