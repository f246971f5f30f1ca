"""RemotePolicy: a `py_policy.PyPolicy` whose actions come from a policy server."""

from __future__ import annotations

import concurrent.futures
from typing import Any, Sequence

import grpc
import numpy as np
import tree
from tf_agents.policies import py_policy
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client.channel import DEFAULT_TIMEOUT
from policy_client.client import ActionResult, PolicyClient
from policy_client.wire import tf_agents_types
from policy_client.wire.spec_check import SpecMismatchError, check_nest

tf_agents_types.register()


class RemotePolicy(py_policy.PyPolicy):
    """A policy served by a policy server, usable wherever a local PyPolicy is.

    The specs are fetched once and equal the served policy's (`==`); `action`
    and `get_initial_state` return numpy nests of the same structure, dtypes
    and shapes as the local policy's. Time steps may be unbatched or carry one
    outer batch dimension. Inputs are checked against the specs before they
    are sent: a mismatch raises a ValueError (or TypeError for a wrong
    structure) naming the field, as a local policy would.

    One RemotePolicy is safe to use from many threads (one channel, one stream).

    Args:
      address: gRPC target of the server, e.g. "127.0.0.1:50051".
      policy: the policy name on the server; empty selects its default policy.
      timeout: deadline of each call in seconds, reconnection included.
      transport: "stream" (default, lowest latency) or "unary".
      credentials: grpc.ChannelCredentials for TLS; None connects in plaintext.
      options: extra gRPC channel options.
      load_balancing: e.g. "round_robin" over a multi-address target.

    Raises:
      RemoteError: the server cannot be reached or has no such policy
        (PolicyNotFoundError).
    """

    def __init__(self, address: str, policy: str = "", *, timeout: float = DEFAULT_TIMEOUT,
                 transport: str = "stream", credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None):
        self._client = PolicyClient(address, policy, timeout=timeout, transport=transport,
                                    credentials=credentials, options=options, load_balancing=load_balancing)
        try:
            specs, version = self._client.get_specs()
        except Exception:
            self._client.close()
            raise
        super().__init__(specs.time_step_spec, specs.action_spec,
                         policy_state_spec=specs.policy_state_spec, info_spec=specs.info_spec)
        if specs.collect_data_spec is not None:
            self._collect_data_spec = specs.collect_data_spec
        self._last_version = version
        self._request_plan, self._answer_plan = self._client.set_plans(specs)

    @property
    def client(self) -> PolicyClient:
        """The numpy-level client underneath (for stats, list_policies, ...)."""
        return self._client

    @property
    def last_version(self) -> int:
        """The policy version (train step) that answered the latest call."""
        return self._last_version

    def action_async(self, time_step: ts.TimeStep, policy_state: Any = (),
                     seed: int | None = None) -> concurrent.futures.Future:
        """Starts `action` and returns a future of its PolicyStep at once.

        Lets an actor step its environment while the server computes. Input
        errors raise here, before anything is sent.
        """
        time_step, policy_state, rows, unbatch = self._prepare(time_step, policy_state)
        inner = self._client.action_async(time_step, policy_state, batch_size=rows, seed=seed)
        outer: concurrent.futures.Future = concurrent.futures.Future()
        inner.add_done_callback(lambda f: self._settle(f, outer, unbatch))
        return outer

    def close(self) -> None:
        """Closes the connection; later calls fail."""
        self._client.close()

    def __enter__(self) -> "RemotePolicy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------- PyPolicy hooks

    def _action(self, time_step: ts.TimeStep, policy_state: Any, seed: int | None = None) -> policy_step.PolicyStep:
        fast = self._conforming_request(time_step, policy_state, seed)
        if fast is not None:
            request, outer = fast
            return self._unwrap(self._client.send(request, self._answer_plan, outer), False)
        time_step, policy_state, rows, unbatch = self._prepare(time_step, policy_state)
        result = self._client.action(time_step, policy_state, batch_size=rows, seed=seed)
        return self._unwrap(result, unbatch)

    def _get_initial_state(self, batch_size: int | None) -> Any:
        return self._client.get_initial_state(batch_size)

    # ----------------------------------------------------- helpers

    def _conforming_request(self, time_step: Any, policy_state: Any, seed: int | None) -> Any:
        """(request, outer shape) when the inputs fit the specs exactly, else None (see _prepare)."""
        step_type = getattr(time_step, "step_type", None)
        if type(step_type) is not np.ndarray or step_type.ndim > 1:
            return None
        outer = step_type.shape
        leaves = self._request_plan.leaves(time_step, policy_state, outer)
        if leaves is None:
            return None
        request = self._client.encode_leaves(self._request_plan, leaves, batch_size=outer[0] if outer else 0,
                                             seed=seed)
        return request, outer

    def _prepare(self, time_step: Any, policy_state: Any) -> tuple[Any, Any, int, bool]:
        """Converts plain numbers to the spec dtypes and checks everything against the specs.

        Returns:
          (time_step, policy_state, rows to send, whether to unbatch the
          action and info of the answer).
        """
        time_step = _as_arrays(self.time_step_spec, time_step, "time_step")
        step_type_shape = time_step.step_type.shape
        if len(step_type_shape) > 1:
            raise SpecMismatchError(
                f"time_step.step_type: expected shape () or (batch_size,), got {step_type_shape}; "
                "RemotePolicy takes at most one outer dimension")
        outer = tuple(step_type_shape)
        check_nest(time_step, self.time_step_spec, outer_shape=outer, path="time_step")
        if not tree.flatten(self.policy_state_spec):
            return time_step, (), outer[0] if outer else 0, False
        policy_state = _as_arrays(self.policy_state_spec, policy_state, "policy_state")
        if not outer and _has_outer_dim_of_one(policy_state, self.policy_state_spec):
            # TF-Agents' convention for an unbatched time step with a state from
            # get_initial_state(1) (what PyDriver does): the step runs as a batch
            # of one, action and info come back unbatched, the state stays batched.
            time_step = tree.map_structure(lambda x: x[None], time_step)
            return time_step, policy_state, 1, True
        check_nest(policy_state, self.policy_state_spec, outer_shape=outer, path="policy_state")
        return time_step, policy_state, outer[0] if outer else 0, False

    def _unwrap(self, result: ActionResult, unbatch: bool) -> policy_step.PolicyStep:
        self._last_version = result.version
        step = result.policy_step
        if unbatch:
            first = lambda nest: tree.map_structure(lambda x: x[0, ...], nest)  # noqa: E731
            step = step._replace(action=first(step.action), info=first(step.info))
        return step

    def _settle(self, inner: concurrent.futures.Future, outer: concurrent.futures.Future,
                unbatch: bool) -> None:
        error = inner.exception()
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(self._unwrap(inner.result(), unbatch))


def _has_outer_dim_of_one(state: Any, spec: Any) -> bool:
    try:
        check_nest(state, spec, outer_shape=(1,))
        return True
    except SpecMismatchError:
        return False


def _as_arrays(spec: Any, value: Any, path: str) -> Any:
    """Leaves that are not numpy arrays (numbers, tensors) become arrays of the spec's dtype."""
    try:
        return tree.map_structure(
            lambda s, v: v if isinstance(v, np.ndarray) else np.asarray(v, dtype=s.dtype), spec, value)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{path} does not match the policy's spec: {e}") from e
