"""RemotePolicy: a `py_policy.PyPolicy` whose actions come from a policy server."""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Sequence

import grpc
import numpy as np
import tree
from tf_agents.policies import py_policy
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client.transport.channel import DEFAULT_TIMEOUT
from policy_client.client import ActionResult, PolicyClient
from policy_client.wire import tf_agents_types
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.spec_check import SpecMismatchError, check_nest

tf_agents_types.register()


class RemotePolicy(py_policy.PyPolicy):
    """A policy served by a policy server, usable wherever a local PyPolicy is.

    The specs are fetched once and equal the served policy's (`==`); `action`
    and `get_initial_state` return numpy nests of the same structure, dtypes
    and shapes as the local policy's. Time steps that match the specs
    (unbatched, or with one outer batch dimension) are batched with other
    actors' on the server. Anything else (Python numbers, other dtypes or
    shapes, tensors, extra keys, state the specs do not declare) is handed to
    the hosted policy's own `action` as it was passed, which casts, ignores or
    raises exactly as the local policy does; its exception reaches the caller
    with the same type (see INPUT_MODE_AS_LOCAL).

    One RemotePolicy is safe to use from many threads (one channel, one stream).

    Args:
      address: gRPC target of the server, e.g. "127.0.0.1:50051", or a
        grpc:// / grpcs:// URI (see PolicyClient and policy_client.transport.security),
        or a target source: a callable returning the current target (e.g. a
        fleet's ReplicaSet), re-read when the replicas move.
      policy: the policy name on the server; empty selects its default policy.
      timeout: deadline of each call in seconds, reconnection included.
      transport: "stream" (default, lowest latency) or "unary".
      credentials: grpc.ChannelCredentials for TLS; None connects in plaintext.
      options: extra gRPC channel options.
      load_balancing: e.g. "round_robin" over a multi-address target.
      token: the bearer token (default: $TFA_POLICY_TOKEN, or the file
        $TFA_POLICY_TOKEN_FILE names); see PolicyClient.
      token_file: a file holding the bearer token, instead of `token`.
      monotonic_versions: ask every server for at least the newest version
        this policy has seen minus `max_version_lag` (ActionRequest.min_version),
        so that versions never go backwards across replicas: a replica that is
        behind waits to catch up, then answers FailedPreconditionError.
      max_version_lag: how far behind the newest version seen an answer may be.
      data_plane: "auto" (default): time steps that fit the specs go through a
        shared-memory slot when the server runs on this host, else over gRPC;
        "shm" or "grpc" force one (see PolicyClient).

    Raises:
      RemoteError: the server cannot be reached or has no such policy
        (PolicyNotFoundError).
    """

    def __init__(self, address: str | Callable[[], str], policy: str = "", *, timeout: float = DEFAULT_TIMEOUT,
                 transport: str = "stream", credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None,
                 token: str | None = None, token_file: str | None = None, monotonic_versions: bool = True,
                 max_version_lag: int = 0, data_plane: str | None = None):
        self._client = PolicyClient(address, policy, timeout=timeout, transport=transport,
                                    credentials=credentials, options=options, load_balancing=load_balancing,
                                    token=token, token_file=token_file, data_plane=data_plane)
        self._client.input_mode = service_pb.INPUT_MODE_AS_LOCAL
        try:
            specs, version = self._client.get_specs()
        except Exception:
            self._client.close()
            raise
        if self._client.backend == "py_tf_policy":  # as PyTFPolicy: derived specs from state () and info (),
            super().__init__(specs.time_step_spec, specs.action_spec, policy_state_spec=(), info_spec=())
            self._policy_state_spec = specs.policy_state_spec  # then its TF policy's state spec
        else:
            super().__init__(specs.time_step_spec, specs.action_spec,
                             policy_state_spec=specs.policy_state_spec, info_spec=specs.info_spec)
        if specs.collect_data_spec is not None:
            self._collect_data_spec = specs.collect_data_spec
        self._last_version = version
        self._version_floor = (lambda newest: max(0, newest - max_version_lag)) if monotonic_versions else None
        self._request_plan, self._answer_plan = self._client.set_plans(specs)
        # TF policies are served as PyTFEagerPolicy would call them: an unbatched
        # time step with a state of one row runs as a batch of one.
        self._batches_single_steps = self._client.backend in _TF_BACKENDS

    @property
    def client(self) -> PolicyClient:
        """The numpy-level client underneath (for stats, list_policies, ...)."""
        return self._client

    @property
    def address(self) -> str:
        """The gRPC target calls go to now (for a target source, its latest)."""
        return self._client.address

    @property
    def last_version(self) -> int:
        """The policy version (train step) that answered the latest call."""
        return self._last_version

    # ------------------------------------ the SavedModel policy's methods, with remote meaning

    def get_train_step(self) -> np.int64:
        """The version (train step) the server serves now, as SavedModelPyTFEagerPolicy.get_train_step()."""
        return np.int64(self._client.get_specs()[1])

    def get_metadata(self) -> dict[str, Any]:
        """The metadata saved with the policy (PolicySaver's `metadata=`), as SavedModelPyTFEagerPolicy returns it:
        a dict of constant tensors. Other backends have none (AttributeError, as the local policies)."""
        return self._saved_function("get_metadata")()

    def __getattr__(self, name: str) -> Any:
        """A function saved with PolicySaver.register_function, called on the server; as
        SavedModelPyTFEagerPolicy forwards unknown attributes to its SavedModel. Anything else: AttributeError."""
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._saved_function(name)

    def _saved_function(self, name: str) -> Callable[..., Any]:
        client = self.__dict__.get("_client")
        if client is None or client.backend != "saved_model":  # only a SavedModel forwards attributes locally
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        known = self.__dict__.get("_functions")
        if known is None:  # the handshake: the served functions and their input signatures, once
            known = self.__dict__["_functions"] = client.functions()
        if name not in known:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r} (the served "
                                 f"SavedModel has no such function; it has: {', '.join(sorted(known)) or 'none'})")
        return _SavedFunction(client, name, known[name])

    def variables(self) -> list[Any]:
        """The values of the served policy's variables, in `policy.variables()` order.

        As the local class returns them, but read-only: constant tensors for a
        SavedModel (SavedModelPyTFEagerPolicy returns its tf.Variables), numpy
        arrays otherwise (PyTFEagerPolicy returns their numpy values).
        Assigning to them would not change the served policy: push new values
        with a VariablePublisher instead.
        """
        self._last_version, values = self._client.variables()
        for value in values:
            value.flags.writeable = False
        if self._client.backend == "saved_model":
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

            return [tf.constant(value) for value in values]
        return values

    def update_from_checkpoint(self, checkpoint_path: str) -> None:
        """Has the server load a PolicySaver checkpoint, as SavedModelPyTFEagerPolicy does locally.

        `checkpoint_path` is on the server's filesystem (a shared one in a
        cluster); the new version is the train step the checkpoint holds. With
        authentication on, only a learner may call this.

        Raises:
          FailedPreconditionError: the served policy cannot load checkpoints
            (only SavedModel backends can), or the checkpoint is older.
          InvalidArgumentError: the path holds no PolicySaver checkpoint.
        """
        self._last_version = self._client.load_checkpoint(checkpoint_path)
        try:  # as SavedModelPyTFEagerPolicy: the number after the path's last "_", if any
            self._restored_step: int | None = int(checkpoint_path.split("_")[-1])
        except ValueError:
            self._restored_step = None

    def get_train_step_from_last_restored_checkpoint_path(self) -> int | None:
        """The train step in the name of the last checkpoint loaded (None before any, or if it has none)."""
        return getattr(self, "_restored_step", None)

    def action_async(self, time_step: ts.TimeStep, policy_state: Any = (),
                     seed: int | None = None) -> concurrent.futures.Future:
        """Starts `action` and returns a future of its PolicyStep at once.

        Lets an actor step its environment while the server computes. Input
        errors raise here, before anything is sent.
        """
        prepared = self._prepare(time_step, policy_state)
        if prepared is None:
            request = self._client.encode_as_local(time_step, policy_state, seed=seed, leaf=_numpy)
            inner = self._client.submit(request)
            unbatch = False
        else:
            time_step, policy_state, rows, unbatch = prepared
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
        fast = self._conforming_leaves(time_step, policy_state)
        if fast is not None:
            leaves, outer = fast
            return self._unwrap(self._client.send_leaves(self._request_plan, leaves, batch_size=outer[0] if outer
                                                         else 0, seed=seed, answer=self._answer_plan), False)
        prepared = self._prepare(time_step, policy_state)
        if prepared is None:  # as the local policy would take it: the server hands it over as it is
            request = self._client.encode_as_local(time_step, policy_state, seed=seed, leaf=_numpy)
            return self._unwrap(self._client.send(request), False)
        time_step, policy_state, rows, unbatch = prepared
        result = self._client.action(time_step, policy_state, batch_size=rows, seed=seed)
        return self._unwrap(result, unbatch)

    def _get_initial_state(self, batch_size: int | None) -> Any:
        return self._client.get_initial_state(batch_size, as_local=True)

    # ----------------------------------------------------- helpers

    def _conforming_leaves(self, time_step: Any, policy_state: Any) -> Any:
        """(leaves, outer shape) when the inputs fit the specs exactly, else None (see _prepare)."""
        step_type = getattr(time_step, "step_type", None)
        if type(step_type) is not np.ndarray or step_type.ndim > 1:
            return None
        outer = step_type.shape
        if not self._request_plan.stateful and not (type(policy_state) is tuple and not policy_state) \
                and not _is_empty(policy_state):
            return None  # state the specs do not declare (e.g. ScriptedPyPolicy's): the policy's own business
        if not outer and self._request_plan.stateful and self._batches_single_steps:
            return None  # PyTFEagerPolicy batches the time step only: see _prepare
        leaves = self._request_plan.leaves(time_step, policy_state, outer)
        return None if leaves is None else (leaves, outer)

    def _prepare(self, time_step: Any, policy_state: Any) -> tuple[Any, Any, int, bool] | None:
        """The inputs as a conforming batch, or None when they do not match the specs.

        Returns:
          (time_step, policy_state, rows to send, whether to unbatch the
          action and info of the answer), or None: the inputs go to the
          hosted policy as they are.
        """
        step_type = getattr(time_step, "step_type", None)
        if not isinstance(time_step, ts.TimeStep) or type(step_type) is not np.ndarray or step_type.ndim > 1:
            return None
        outer = step_type.shape
        rows = outer[0] if outer else 0
        conforming = _conform(time_step, self.time_step_spec, outer)
        if conforming is None:
            return None
        if not tree.flatten(self.policy_state_spec):
            return (conforming, (), rows, False) if _is_empty(policy_state) else None
        state = _conform(policy_state, self.policy_state_spec, outer)
        if state is not None and (outer or not self._batches_single_steps):
            return conforming, state, rows, False
        state = _conform(policy_state, self.policy_state_spec, (1,)) if not outer else None
        if state is not None and self._batches_single_steps:
            # PyTFEagerPolicy's convention for an unbatched time step with a state
            # from get_initial_state(1) (what PyDriver does): the step runs as a
            # batch of one, action and info come back unbatched, the state batched.
            return tree.map_structure(lambda x: x[None], conforming), state, 1, True
        return None

    def _unwrap(self, result: ActionResult, unbatch: bool) -> policy_step.PolicyStep:
        self._last_version = result.version
        if self._version_floor is not None:  # never accept an older version than this from now on
            self._client.min_version = max(self._client.min_version, self._version_floor(result.version))
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


_TF_BACKENDS = ("tf_eager", "saved_model", "py_tf_policy")


def _conform(value: Any, spec: Any, outer: tuple[int, ...]) -> Any:
    """`value` in the spec's containers when it is a nest of numpy arrays matching `spec`
    with `outer` dimensions, else None. (Keras-tracked dicts and lists become plain ones.)"""
    try:
        value = tree.map_structure(lambda _, v: v, spec, value)
    except (TypeError, ValueError):
        return None
    if not all(type(x) is np.ndarray for x in tree.flatten(value)):
        return None
    try:
        check_nest(value, spec, outer_shape=outer)
    except (SpecMismatchError, TypeError, ValueError):
        return None
    return value


class _SavedFunction:
    """A function of the served SavedModel: called with tensors or arrays, it answers constant tensors.

    Attributes:
      name: its name.
      input_signature: each input tensor's (path, dtype, shape; None: any size), as saved.
    """

    def __init__(self, client: PolicyClient, name: str, input_signature: list):
        self._client, self.name, self.input_signature = client, name, input_signature

    def __call__(self, *args: Any) -> Any:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        result = self._client.call_function(self.name, *tree.map_structure(_numpy, args))
        return tree.map_structure(lambda x: x if x is None else tf.constant(x), result)

    def __repr__(self) -> str:
        return f"<remote saved function {self.name!r}, inputs {self.input_signature}>"


def _is_empty(state: Any) -> bool:
    """Whether a state is TF-Agents' "no state": (), [] or {} (None travels as None: policies see it)."""
    return isinstance(state, (tuple, list, dict)) and not tree.flatten(state)


def _numpy(value: Any) -> Any:
    """Tensors travel as numpy arrays of their dtype; everything else as it is."""
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
