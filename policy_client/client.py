"""PolicyClient: the numpy-level client (no TensorFlow): specs, initial state, actions."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import threading
import time
from typing import Any, Sequence

import grpc
import numpy as np

from policy_client import wire
from policy_client.transport.channel import DEFAULT_TIMEOUT
from policy_client.transport.connection import Router, TargetSource
from policy_client.wire import errors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.standins import PolicySpecs
from policy_client.wire.step_plan import AnswerPlan, RequestPlan


# The default data_plane of every client (see PolicyClient).
DATA_PLANE_ENV = "TFA_POLICY_DATA_PLANE"


@dataclasses.dataclass(frozen=True)
class ActionResult:
    """One answer: the PolicyStep (numpy nests) and the policy version that made it."""

    policy_step: Any
    version: int


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    """A hosted policy as ListPolicies describes it."""

    name: str
    version: int
    backend: str
    stateful: bool


class PolicyClient:
    """Talks to a policy server with numpy nests in and out.

    Thread-safe: one client (one channel, one stream) serves many threads.

    Args:
      address: gRPC target of the server (see make_channel), or a URI
        "grpcs://host:port/policy?ca=...&cert=...&key=...&server_name=...&token_file=..."
        (or grpc:// for plaintext; see policy_client.transport.security), or
        a target source: a callable returning the current target (e.g. a
        fleet's ReplicaSet). The client re-reads a source every second, and at
        once when a call finds no server, and moves to a new target without
        failing the calls in flight (see transport.connection).
      policy: the policy name; empty selects the URI's, else the server's default policy.
      timeout: seconds each call may take (its deadline), reconnection included.
      transport: "stream" (one bidi stream, lowest latency) or "unary".
      credentials: grpc.ChannelCredentials for TLS (see make_channel); None
        connects in plaintext (or with the URI's TLS options).
      options: extra gRPC channel options (see make_channel).
      load_balancing: e.g. "round_robin" over a multi-address target (see make_channel).
      use_plans: after the first answer, fetch the policy's specs once and
        encode / decode conforming values leaf by leaf from then on (the
        generic codec still takes whatever does not fit).
      token: the bearer token sent with every call (default:
        $TFA_POLICY_TOKEN, or the file $TFA_POLICY_TOKEN_FILE names; token=""
        sends none). Only over TLS or to a local address (see security).
      token_file: a file holding the bearer token, instead of `token`.
      data_plane: how conforming action requests travel once the specs are
        known: "auto" (default, or $TFA_POLICY_DATA_PLANE): through a
        shared-memory slot when the server is on this host and offers one
        (see policy_client.transport.shm), else over gRPC (always over gRPC for a
        target of several replicas, which gRPC balances); "shm": the same, and a
        server that offers no usable slot is an error; "grpc": never shared
        memory. Everything else (specs, state, weights, requests that do not
        fit the specs or the slot) always takes gRPC.

    Raises:
      ValueError: a bad transport, URI or token (see security.endpoint).
      OSError: a certificate or token file cannot be read.

    Attributes:
      input_mode: the ActionRequest.input_mode of every request (STRICT by
        default; RemotePolicy sets INPUT_MODE_AS_LOCAL).
      min_version: the ActionRequest.min_version of every request: the
        oldest version accepted (0: any; RemotePolicy keeps it at the newest
        version seen).
      backend: the kind of backend serving the policy, once get_specs ran.
    """

    input_mode: int = service_pb.INPUT_MODE_UNSPECIFIED
    backend: str = ""
    min_version: int = 0

    def __init__(self, address: str | TargetSource, policy: str = "", *, timeout: float = DEFAULT_TIMEOUT,
                 transport: str = "stream", credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None,
                 use_plans: bool = True, token: str | None = None, token_file: str | None = None,
                 data_plane: str | None = None):
        if transport not in ("stream", "unary"):
            raise ValueError(f"transport must be 'stream' or 'unary', got {transport!r}")
        self._router = Router(address, policy, timeout=timeout, credentials=credentials, options=options,
                              load_balancing=load_balancing, token=token, token_file=token_file,
                              data_plane=data_plane or os.environ.get(DATA_PLANE_ENV) or "auto")
        self.policy = self._router.policy
        self.timeout = timeout
        self.transport = transport
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.use_plans = use_plans
        self._plans: tuple[RequestPlan, AnswerPlan] | None = None
        self._plans_tried = False

    @property
    def address(self) -> str:
        """The gRPC target calls go to now (for a target source, its latest)."""
        return self._router.current.target

    def retarget(self, target: str) -> None:
        """Moves new calls to `target` at once (calls in flight finish, or go there if their server is gone)."""
        self._router.retarget(target)

    def set_plans(self, specs: PolicySpecs) -> tuple[RequestPlan, AnswerPlan]:
        """Compiles the plans of `specs` (the served policy's) for the fast path."""
        self._plans = (RequestPlan(specs.time_step_spec, specs.policy_state_spec),
                       AnswerPlan(specs.action_spec, specs.policy_state_spec, specs.info_spec))
        return self._plans

    def plans(self) -> tuple[RequestPlan, AnswerPlan] | None:
        """The fast-path plans, once known (None before, or when disabled)."""
        return self._plans

    def _learn_plans(self) -> None:
        """After an answer (the server serves the policy): fetch its specs once for the fast path."""
        if self._plans is not None or not self.use_plans or self._plans_tried:
            return
        self._plans_tried = True  # one attempt, whatever happens
        try:
            self.set_plans(self.get_specs()[0])
        except errors.RemoteError:
            pass

    # -------------------------------------------------------------- metadata

    def list_policies(self) -> list[PolicyInfo]:
        """Every policy the server hosts."""
        response = self._unary("ListPolicies", service_pb.ListPoliciesRequest())
        return [PolicyInfo(p.name, p.version, p.backend, p.stateful) for p in response.policies]

    def get_specs(self) -> tuple[PolicySpecs, int]:
        """The policy's specs and current version (and sets `backend`, the kind hosting it)."""
        response = self._unary("GetSpecs", service_pb.GetSpecsRequest(policy=self.policy))
        self.backend = response.backend
        return wire.policy_specs_from_proto(response.specs), response.version

    def get_initial_state(self, batch_size: int | None = None, *, as_local: bool = False) -> Any:
        """The policy's initial state for `batch_size` rows (None: unbatched).

        With `as_local`, exactly what the hosted policy's own
        `get_initial_state(batch_size)` returns (INPUT_MODE_AS_LOCAL).
        """
        request = service_pb.GetInitialStateRequest(policy=self.policy, batch_size=batch_size or 0)
        if as_local:
            request.input_mode = service_pb.INPUT_MODE_AS_LOCAL
        response = self._unary("GetInitialState", request)
        return wire.nest_from_proto(response.state, copy=True)

    def load_checkpoint(self, path: str, version: int = 0) -> int:
        """Asks the server to load a PolicySaver checkpoint from its filesystem; returns the version served.

        `version` 0 takes the checkpoint's own train step (else the one in its name).
        """
        request = service_pb.LoadCheckpointRequest(policy=self.policy, path=path, version=version)
        return self._unary("LoadCheckpoint", request).version

    def variables(self) -> tuple[int, list[np.ndarray]]:
        """(version, the values of every variable in the policy's order) as the server holds them."""
        request = service_pb.GetVariablesRequest(policy=self.policy, include_values=True)
        response = self._unary("GetVariables", request)
        return response.version, [wire.array_from_proto(v.value, copy=True) for v in response.variables]

    def functions(self) -> dict[str, list[tuple[str, np.dtype, tuple[int | None, ...]]]]:
        """A SavedModel's other functions (see RemotePolicy): name -> inputs' (path, dtype, shape; None: any)."""
        response = self._unary("ListFunctions", service_pb.ListFunctionsRequest(policy=self.policy))
        return {f.name: [(t.path, wire.dtype_from_proto(t.dtype), tuple(None if d < 0 else d for d in t.shape))
                         for t in f.inputs] for f in response.functions}

    def call_function(self, name: str, *args: Any) -> Any:
        """Calls one of `functions()` on the server with positional arguments; returns its result (numpy)."""
        request = service_pb.CallFunctionRequest(policy=self.policy, function=name)
        wire.write_nest(request.args, tuple(args), path="args")
        return wire.nest_from_proto(self._unary("CallFunction", request).result, copy=True)

    def stats(self) -> list[dict[str, Any]]:
        """Serving statistics of every policy (or of this client's policy if named)."""
        response = self._unary("GetStats", service_pb.GetStatsRequest(policy=self.policy))
        return [{f.name: getattr(p, f.name) for f in p.DESCRIPTOR.fields} for p in response.policies]

    # -------------------------------------------------------------- actions

    def encode_request(self, time_step: Any, policy_state: Any = (), *, batch_size: int = 0,
                       seed: int | None = None) -> service_pb.ActionRequest:
        """Builds an ActionRequest (batch_size 0: unbatched values).

        Raises:
          CodecError: a value that cannot be encoded (the message names it).
        """
        request = service_pb.ActionRequest(policy=self.policy, batch_size=batch_size, request_id=next(self._ids),
                                           input_mode=self.input_mode, min_version=self.min_version)
        wire.write_time_step(request.time_step, time_step)
        wire.write_nest(request.policy_state, policy_state if policy_state is not None else ())
        if seed is not None:
            request.seed = int(seed)
        return request

    def encode_as_local(self, time_step: Any, policy_state: Any = (), *, seed: int | None = None,
                        leaf: Any = None) -> service_pb.ActionRequest:
        """An INPUT_MODE_AS_LOCAL request carrying the values exactly as given.

        Any nest travels (scalars, any dtype or shape, extra keys); the server
        hands it to the hosted policy's own `action`, which casts or raises as
        it would locally. `leaf` converts leaves (e.g. tensors) first.
        """
        request = service_pb.ActionRequest(policy=self.policy, request_id=next(self._ids),
                                           input_mode=service_pb.INPUT_MODE_AS_LOCAL, min_version=self.min_version)
        _mark(request, self._router.current.shm.fell_back("as_local"))  # only gRPC carries values off the spec
        wire.write_nest(request.any_time_step, time_step, path="time_step", leaf=leaf)
        wire.write_nest(request.policy_state, policy_state, path="policy_state", leaf=leaf)
        if seed is not None:
            request.seed = int(seed)
        return request

    def action(self, time_step: Any, policy_state: Any = (), *, batch_size: int = 0,
               seed: int | None = None) -> ActionResult:
        """Asks the server for an action; blocks until it answers.

        Raises:
          RemoteError: a subclass per gRPC status (InvalidArgumentError is a
            ValueError; DeadlineExceededError a TimeoutError).
        """
        plans = self.plans()
        if plans is not None:
            outer = (batch_size,) if batch_size else ()
            leaves = plans[0].leaves(time_step, policy_state, outer)
            if leaves is not None:
                return self.send_leaves(plans[0], leaves, batch_size=batch_size, seed=seed, answer=plans[1])
        reason = self._router.current.shm.fell_back("not_conforming" if plans is not None else "no_plan_yet")
        request, plan, outer = self._prepare(time_step, policy_state, batch_size, seed)
        return self.send(_mark(request, reason), plan, outer)

    @property
    def data_plane(self) -> str:
        """Where conforming action requests go now: "shm" (a shared-memory slot) or "grpc"."""
        return "shm" if self._router.current.shm.active else "grpc"

    @property
    def shm_fallbacks(self) -> dict[str, int]:
        """Calls that went over gRPC though the shared-memory plane is on, by reason (see transport.shm)."""
        return dict(self._router.current.shm.fallbacks)

    def send_leaves(self, plan: RequestPlan, leaves: Sequence[np.ndarray], *, batch_size: int = 0,
                    seed: int | None = None, answer: AnswerPlan | None = None) -> ActionResult:
        """Sends the leaves of a conforming (time_step, state) (see RequestPlan.leaves) and decodes the answer:
        through the shared-memory slot when there is one (see `data_plane`), else as an ActionRequest."""
        reason = None
        if answer is not None:
            result = self._through_slot(leaves, batch_size, seed, answer)
            if isinstance(result, ActionResult):
                return result
            reason = result
        outer = (batch_size,) if batch_size else ()
        request = self.encode_leaves(plan, leaves, batch_size=batch_size, seed=seed)
        return self.send(_mark(request, reason), answer, outer)

    def _through_slot(self, leaves: Sequence[np.ndarray], rows: int, seed: int | None,
                      answer: AnswerPlan) -> ActionResult | str | None:
        """The answer through the shared-memory slot; else send it over gRPC (the reason is counted), with
        the reason returned if any (see ShmPlane.fell_back)."""
        plane = self._router.current.shm
        if seed is not None and self.input_mode == service_pb.INPUT_MODE_AS_LOCAL:
            return plane.fell_back("seeded_as_local")  # the policy's own answer to a seed: the AS_LOCAL path
        try:
            done = plane.call(leaves, rows, seed, time.monotonic() + self.timeout, self.min_version)
        except errors.DeadlineExceededError:
            raise errors.DeadlineExceededError(
                f"no answer within {self.timeout:.1f}s from {self.address} (shared memory)") from None
        return ActionResult(answer.unflatten(done[1]), done[0]) if isinstance(done, tuple) else done

    def _prepare(self, time_step: Any, policy_state: Any, batch_size: int,
                 seed: int | None) -> tuple[service_pb.ActionRequest, AnswerPlan | None, tuple[int, ...]]:
        """The request (by the plan when the values fit it), and how to decode its answer."""
        outer = (batch_size,) if batch_size else ()
        plans = self.plans()
        if plans is not None:
            leaves = plans[0].leaves(time_step, policy_state, outer)
            if leaves is not None:
                return self.encode_leaves(plans[0], leaves, batch_size=batch_size, seed=seed), plans[1], outer
        request = self.encode_request(time_step, policy_state, batch_size=batch_size, seed=seed)
        return request, plans[1] if plans is not None else None, outer

    def session_action(self, time_step: Any, session: str, *, start: bool = False, end: bool = False,
                       seed: int | None = None) -> ActionResult:
        """One step of a server-held session (ActionRequest.session): the server keeps the state.

        For clients that cannot carry a recurrent policy's state: send one
        unbatched time step; `start` (or a FIRST step type) starts the session
        from the policy's initial state, `end` frees it after this step. The
        answer's `policy_step.state` is `()`.

        Raises:
          FailedPreconditionError: the session is not open (never started,
            ended, or idle past the server's --session-idle-timeout).
          ResourceExhaustedError: the server keeps --max-sessions already.
        """
        request = self.encode_request(time_step, (), seed=seed)
        request.ClearField("policy_state")
        request.session.id, request.session.start, request.session.end = session, start, end
        return self.send(_mark(request, self._router.current.shm.fell_back("session")))

    def action_async(self, time_step: Any, policy_state: Any = (), *, batch_size: int = 0,
                     seed: int | None = None) -> concurrent.futures.Future:
        """Like `action`, but returns a future of the ActionResult at once (over gRPC)."""
        request, plan, outer = self._prepare(time_step, policy_state, batch_size, seed)
        return self.submit(_mark(request, self._router.current.shm.fell_back("async")), plan, outer)

    def submit(self, request: service_pb.ActionRequest, plan: AnswerPlan | None = None,
               outer: tuple[int, ...] = ()) -> concurrent.futures.Future:
        """`send` on a worker thread: returns a future of the ActionResult at once."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="policy-client")
        return self._executor.submit(self.send, request, plan, outer)

    def encode_leaves(self, plan: RequestPlan, leaves: Sequence[Any], *, batch_size: int = 0,
                      seed: int | None = None) -> service_pb.ActionRequest:
        """Builds an ActionRequest from the leaves of a conforming (time_step, state) (see RequestPlan)."""
        request = service_pb.ActionRequest(policy=self.policy, batch_size=batch_size, request_id=next(self._ids),
                                           input_mode=self.input_mode, min_version=self.min_version)
        plan.write(request.time_step, request.policy_state, leaves)
        if seed is not None:
            request.seed = int(seed)
        return request

    def send(self, request: service_pb.ActionRequest, plan: AnswerPlan | None = None,
             outer: tuple[int, ...] = ()) -> ActionResult:
        """Sends a prepared request and decodes the answer.

        What the server did not accept (UNAVAILABLE, or a unary call a
        stopping server cancelled) is sent again until the deadline; a request
        over a message size limit fails alone, also on the shared stream (see
        ActionSender).

        With `plan`, an answer whose leaves all have their specs' dtypes and
        shapes (outer + spec shape) is decoded leaf by leaf.
        """
        response = self._router.send(request, self.transport, self.timeout)
        result = _decode(response, plan, outer)
        self._learn_plans()
        return result

    def close(self) -> None:
        """Closes the stream and the channel."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._router.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- internals

    def _unary(self, method: str, request: Any) -> Any:
        return self._router.unary(method, request, self.timeout)


def _mark(request: service_pb.ActionRequest, fallback: str | None) -> service_pb.ActionRequest:
    """The request, saying why it takes gRPC when the client's plane is forced to shared memory."""
    if fallback is not None:
        request.slot_fallback = service_pb.SlotFallback.Value("SLOT_FALLBACK_" + fallback.upper())
    return request


def _decode(response: service_pb.ActionResponse, plan: AnswerPlan | None, outer: tuple[int, ...]) -> ActionResult:
    step = plan.read(response.policy_step, outer) if plan is not None else None
    if step is None:
        step = wire.policy_step_from_proto(response.policy_step, copy=True)
    return ActionResult(step, response.version)
