"""The swap: every PyPolicy a TF-Agents test builds is served by a policy server and used through RemotePolicy.

While a `Swap` is active, constructing a PyPolicy (e.g.
`random_py_policy.RandomPyPolicy(time_step_spec, action_spec)`, or a test's
own `PyPolicyMock(...)`) builds the real local policy, hosts it on a policy
server on 127.0.0.1 (port 0) and returns a `RemotePolicy` to it.
The classes stay the same objects: only their metaclass is replaced for the
duration of the test (and put back after), so module attributes,
`isinstance` and subclassing are untouched.

What is not swapped: anything the servers build (backends wrap policies of
their own), anything built on another thread than the test's, and
RemotePolicy itself. Everything else is, wrappers and inner policies alike: an
EpsilonGreedyPolicy the test builds around a (swapped) policy is itself
served, and so is the RandomPyPolicy its constructor builds, as a user who
serves each of them would have them.

How the server hosts the local policy is what a user serving it would write
(`HOSTS`): the TF-Agents classes with a dedicated backend use it, anything
else is hosted as it is by PyPolicyBackend (`backend_for`).
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any, Self

import tensorflow as tf
from tf_agents.policies import py_policy, py_tf_eager_policy, py_tf_policy

from policy_client import RemotePolicy
from policy_server.config import ServerConfig
from policy_server.server import BackgroundServer, PolicyServer
from policy_server.backends import backend_for
from policy_server.backends.eager import EagerBackend
from policy_server.backends.graph import GraphBackend
from policy_server.backends.saved_model import SavedModelBackend

# Deadline of each call of the RemotePolicies the swap returns (seconds).
TIMEOUT = 20.0


def _py_tf_policy_backend(local: py_tf_policy.PyTFPolicy, arguments: dict) -> Any:
    """A PyTFPolicy runs in its graph (GraphBackend); built eagerly, its TF policy runs on EagerBackend."""
    if tf.executing_eagerly():
        return EagerBackend(local._tf_policy)  # pylint: disable=protected-access
    return GraphBackend(local, tf.compat.v1.get_default_graph())


# Exact class -> f(local policy, constructor arguments) -> backend. Others: backend_for(local).
HOSTS: dict[type, Callable[[Any, dict], Any]] = {
    # EagerBackend on its TF policy (backend_for's choice).
    py_tf_eager_policy.PyTFEagerPolicy: lambda local, _: backend_for(local),
    # The server loads the SavedModel directory itself (`policy-server --policy NAME=DIR`).
    py_tf_eager_policy.SavedModelPyTFEagerPolicy: lambda _, args: SavedModelBackend(args["model_path"]),
    py_tf_policy.PyTFPolicy: _py_tf_policy_backend,
}

_active: Swap | None = None


class _SwappingMeta(abc.ABCMeta):
    """The metaclass of every PyPolicy class while a Swap is active."""

    def __call__(cls, *args, **kwargs):
        swap = _active
        if swap is None or not swap.swaps_here() or issubclass(cls, RemotePolicy):
            return super().__call__(*args, **kwargs)
        local = super().__call__(*args, **kwargs)
        with swap.hosting():
            host = HOSTS.get(cls)
            if host is None:
                return swap.serve(local, backend_for(local))
            arguments = inspect.signature(cls.__init__).bind(local, *args, **kwargs).arguments
            return swap.serve(local, host(local, arguments))


def _policy_classes() -> list[type]:
    """PyPolicy and every subclass defined so far whose metaclass is ABCMeta (or already swapped)."""
    found, todo = [], [py_policy.PyPolicy]
    while todo:
        cls = todo.pop()
        if type(cls) in (abc.ABCMeta, _SwappingMeta) and cls not in found:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


class Swap:
    """Swaps every PyPolicy built while active for a RemotePolicy; stops every server it started on exit.

    Attributes:
      remotes: the RemotePolicies returned so far, in construction order.
    """

    def __init__(self) -> None:
        self.remotes: list[RemotePolicy] = []
        self._background: BackgroundServer | None = None
        self._servers: list[PolicyServer] = []
        self._thread = threading.get_ident()
        self._hosting = False

    def swaps_here(self) -> bool:
        """Only the test's own constructions: not the servers' (backends build local policies too)."""
        return threading.get_ident() == self._thread and not self._hosting

    @contextlib.contextmanager
    def hosting(self) -> Iterator[None]:
        self._hosting = True
        try:
            yield
        finally:
            self._hosting = False

    def serve(self, local: py_policy.PyPolicy, backend: Any) -> RemotePolicy:
        """Hosts `backend` (built from `local`) on a server of its own and returns a RemotePolicy to it.

        The test's first server is a BackgroundServer; the others run on its
        event loop (several event loops running gRPC servers in one process
        log BlockingIOError tracebacks). No server waits for its policy to
        load: one that fails to load still leaves a server to stop, and
        RemotePolicy() gets the failure as a remote user would.
        """
        name = type(local).__name__
        if self._background is None:
            self._background = BackgroundServer({name: backend}, wait_until_loaded=False)
            server = self._background.server
        else:
            server = self._background.run(_start({name: backend}))
        self._servers.append(server)
        try:
            remote = RemotePolicy(server.bound_address, name, timeout=TIMEOUT)
        except Exception:
            # Collect the load's exception (else asyncio logs "Task exception was never
            # retrieved"); the test sees RemotePolicy's error.
            with contextlib.suppress(Exception):
                self._background.run(server.wait_until_loaded(), timeout=TIMEOUT)
            raise
        self.remotes.append(remote)
        return remote

    def __enter__(self) -> Self:
        global _active
        assert _active is None, "one Swap at a time"
        _active = self
        for cls in _policy_classes():
            cls.__class__ = _SwappingMeta  # classes defined from now on inherit it
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        for cls in _policy_classes():
            cls.__class__ = abc.ABCMeta
        for remote in self.remotes:
            remote.close()
        if self._background is not None:
            for server in self._servers[1:]:
                self._background.run(server.stop(grace=1.0))
            self._background.stop(grace=1.0)


async def _start(policies: dict) -> PolicyServer:
    server = PolicyServer(policies, ServerConfig())
    await server.start(wait_until_loaded=False)
    return server
