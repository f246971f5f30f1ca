"""A second forkserver for the actor processes that import TensorFlow (local policies, RemotePolicy).

Every actor process forks from a forkserver that has already imported what
the actor imports, so that all actors of a row share one memory layout. A
process that maps TensorFlow at its own address pays more per gRPC call with
more processes than cores, for code that never touches TensorFlow: at 16
CartPole actors on 2 cores, a TF-free `PolicyClient` actor that only adds
`import tensorflow` spent 383 us of CPU per call instead of 266 us, and the
server 259 us instead of 203 us (docs/benchmarks.md). The TF-free rows
(PolicyClient, echo) keep multiprocessing's own forkserver, which must not
import TensorFlow (their RSS is part of the comparison).

multiprocessing runs one forkserver per process; `context(preload)` returns
a context whose processes come from a second one, in this module.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing import context as mp_context
from multiprocessing import (
    forkserver,
    popen_forkserver,
    process,
    reduction,
    spawn,
    util,
)
from typing import Any

# What the TF actors import, in the order they import it.
TF_PRELOAD = ("grpc", "numpy", "bench.processes", "tensorflow", "tf_agents.policies.py_tf_eager_policy",
              "tf_agents.trajectories.time_step", "policy_client")


class _Popen(popen_forkserver.Popen):
    """popen_forkserver.Popen, launching from this module's forkserver instead of multiprocessing's."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        mp_context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            mp_context.set_spawning_popen(None)
        self.sentinel, w = _SERVER.connect_to_new_process(self._fds)
        parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Process(process.BaseProcess):
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


class _Context(type(multiprocessing.get_context("forkserver"))):  # type: ignore[misc]
    Process = _Process


_SERVER = forkserver.ForkServer()


def context(preload: Sequence[str] = TF_PRELOAD) -> Any:
    """A multiprocessing context (Process, Queue, Event) whose processes fork from this module's forkserver,
    which imports `preload` when it starts (at the first process; one forkserver per bench process)."""
    _SERVER.set_forkserver_preload(list(preload))
    return _Context()
