"""Backends for TensorFlow policies: eager, PolicySaver SavedModel, PyTFPolicy graph.

Numpy values are walked with dm-tree, like everywhere else; tf.nest only walks
TensorFlow's own structures (TensorSpecs, placeholders, variables).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf
import tree
from tf_agents.policies import policy_saver, py_policy, py_tf_eager_policy, py_tf_policy, tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step as ps_lib
from tf_agents.utils import common

from policy_client.wire import raised
from policy_client.wire.standins import PolicySpecs
from policy_server.backend import Backend, PyPolicyBackend, UnsupportedSeedError, VariableSpec, specs_of, to_numpy


def _batched_signature(spec: Any) -> Any:
    """TensorSpecs of `spec` with a None outer (batch) dimension."""
    return tensor_spec.add_outer_dims_nest(tensor_spec.from_spec(spec), (None,))


def _variable_specs(variables: list[tf.Variable]) -> list[VariableSpec]:
    return [VariableSpec(v.name, tuple(v.shape.as_list()), np.dtype(v.dtype.as_numpy_dtype)) for v in variables]


class _FlatCall:
    """Calls a traced function through its concrete function with flat tensors.

    tf.function's argument binding costs about 0.5 ms per call for a TF-Agents
    time step; the server has already checked every input against the specs,
    so the call goes straight to the concrete function (3x less overhead).
    Falls back to the public call if this TensorFlow has no `_call_flat`.
    """

    def __init__(self, function: Any, *signature: Any):
        self._concrete = function.get_concrete_function(*signature)
        self._dtypes = [spec.dtype for spec in tf.nest.flatten(signature)]
        self._flat = getattr(self._concrete, "_call_flat", None)

    def __call__(self, time_step: Any, policy_state: Any) -> Any:
        if self._flat is None:
            return self._concrete(time_step, policy_state)
        return self.call_flat(tree.flatten((time_step, policy_state)))

    def call_flat(self, leaves: list[np.ndarray]) -> Any:
        """Calls with the inputs' leaves in tf.nest order (time_step, then policy_state)."""
        if self._flat is None:
            return self._concrete(*tf.nest.pack_sequence_as(self._concrete.structured_input_signature[0], leaves))
        return self._flat([_to_tensor(x, d) for x, d in zip(leaves, self._dtypes)], self._concrete.captured_inputs)


try:  # Skips tf.convert_to_tensor's registry lookup (a typing.Protocol check per call).
    from tensorflow.python.eager import context as _context  # pylint: disable=g-direct-tensorflow-import
    from tensorflow.python.framework.constant_op import convert_to_eager_tensor as _eager_tensor  # pylint: disable=g-direct-tensorflow-import

    def _to_tensor(value: np.ndarray, dtype: tf.DType) -> tf.Tensor:
        return _eager_tensor(value, _context.context(), dtype)
except ImportError:  # pragma: no cover - other TensorFlow versions
    _to_tensor = tf.convert_to_tensor


class _IsolatedSeed:
    """Runs a seeded eager call under `tf.random.set_seed(seed)`, then restores the global seed.

    A seeded call must be reproducible (the same seed, the same action, as
    locally after `tf.random.set_seed(seed)`) but must not leave the
    process-global seed set: every later unseeded call of every actor (and of
    an in-process caller) would replay the same draws. TensorFlow has no
    public getter, so the eager context's seed and its op-seed generator are
    saved and put back. With `seed=None` the block runs with no global seed
    (see EagerBackend: tracing the unseeded function).
    """

    def __init__(self, seed: int | None):
        self.seed = seed

    def __enter__(self) -> None:
        ctx = _context.context()
        # A fresh process's context has neither until tf.random.set_seed first runs.
        self._saved = (getattr(ctx, "_seed", None), getattr(ctx, "_rng", None))
        rng = self._saved[1]
        self._state = rng.getstate() if rng is not None else None
        if self.seed is None:
            ctx._seed, ctx._rng = None, None  # pylint: disable=protected-access
        else:
            tf.random.set_seed(self.seed)

    def __exit__(self, *exc) -> None:
        ctx = _context.context()
        ctx._seed, ctx._rng = self._saved  # pylint: disable=protected-access
        if self._state is not None:
            ctx._rng.setstate(self._state)  # pylint: disable=protected-access


class _LocalWrappers:
    """The local py policies a caller would wrap a TF policy in, one per kind of time step.

    `batch_time_steps=True` (TF-Agents' default) for unbatched time steps,
    False for time steps with an outer batch dimension (a batched
    environment), as a TF-Agents user builds them. Made on first use.
    """

    def __init__(self, make: Any):
        self._make = make
        self._made: dict[bool, Any] = {}

    @property
    def single(self) -> Any:
        return self._get(True)

    def for_step(self, time_step: Any) -> Any:
        return self._get(np.ndim(getattr(time_step, "step_type", 0)) == 0)

    def _get(self, batch_time_steps: bool) -> Any:
        if batch_time_steps not in self._made:
            self._made[batch_time_steps] = self._make(batch_time_steps)
        return self._made[batch_time_steps]


class _EagerVariables:
    """Variable access shared by the eager backends (a list of tf.Variables)."""

    _variables: list[tf.Variable]

    def variable_specs(self) -> list[VariableSpec]:
        return _variable_specs(self._variables)

    def variable_values(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._variables]

    def assign_variables(self, values) -> None:
        for variable, value in zip(self._variables, values):
            variable.assign(value)


class EagerBackend(_EagerVariables, Backend):
    """A `TFPolicy` (or the policy inside a `PyTFEagerPolicy`) in eager mode.

    Unseeded calls run one `tf.function` whose input signature has a None
    batch dimension, so a new batch size never retraces. Seeded calls run
    eagerly after `tf.random.set_seed(seed)`, so the same seed gives the same
    action every time.

    Args:
      policy: a `tf_policy.TFPolicy` or a `PyTFEagerPolicy` wrapping one.
      version: the initial policy version.
    """

    kind = "tf_eager"

    def __init__(self, policy: Any, *, version: int = 0):
        if isinstance(policy, py_tf_eager_policy.PyTFEagerPolicyBase):
            policy = policy._policy  # pylint: disable=protected-access
        if not isinstance(policy, tf_policy.TFPolicy):
            raise TypeError(f"EagerBackend needs a TFPolicy or PyTFEagerPolicy, got {type(policy).__name__}")
        super().__init__(specs_of(policy), version)
        self.policy = policy
        self._local = _LocalWrappers(lambda batch_time_steps: py_tf_eager_policy.PyTFEagerPolicy(
            policy, batch_time_steps=batch_time_steps))
        self._variables = tf.nest.flatten(policy.variables())
        self._signature = (_batched_signature(policy.time_step_spec), _batched_signature(policy.policy_state_spec))
        self._traced: _FlatCall | None = None

    @property
    def _action_fn(self) -> "_FlatCall":
        """The batched function, traced at the first unseeded call, as locally.

        Tracing calls the policy, and some policies build state on their first
        call (OUNoisePolicy its noise process, from that call's seed): tracing
        at load would build it before a first seeded call could. Traced with no
        global seed: its random ops then draw fresh seeds whenever TensorFlow
        re-creates their kernels (as `set_seed` in a seeded call does), instead
        of replaying the sequence a graph seed fixes at trace time.
        """
        if self._traced is None:
            with _IsolatedSeed(None):
                self._traced = _FlatCall(tf.function(self._run, input_signature=self._signature, autograph=False),
                                         *self._signature)
        return self._traced

    def _run(self, time_step: Any, policy_state: Any) -> Any:
        return self.policy.action(time_step, policy_state)

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        if seed is None:
            return to_numpy(self._action_fn(time_step, policy_state))
        return self._seeded(time_step, policy_state, seed)

    def action_flat(self, leaves: list[np.ndarray], seed: int | None = None) -> Any:
        if seed is None:
            return to_numpy(self._action_fn.call_flat(leaves))
        return super().action_flat(leaves, seed)

    def _seeded(self, time_step: Any, policy_state: Any, seed: int) -> Any:
        with _IsolatedSeed(seed):
            time_step = tf.nest.map_structure(tf.convert_to_tensor, time_step)
            return to_numpy(self.policy.action(time_step, policy_state, seed=seed))

    def local_action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        local = self._local.for_step(time_step)
        if seed is None:
            return to_numpy(local.action(time_step, policy_state))
        with _IsolatedSeed(seed):
            return to_numpy(local.action(time_step, policy_state, seed=seed))

    def initial_state(self, batch_size: int | None) -> Any:
        # None (not 0) asks TF-Agents for an unbatched state: 0 would give zero rows.
        return to_numpy(self.policy.get_initial_state(batch_size=batch_size or None))

    def local_initial_state(self, batch_size: int | None) -> Any:
        return to_numpy(self._local.single.get_initial_state(batch_size))


class SavedModelBackend(_EagerVariables, Backend):
    """A policy saved by `tf_agents.policies.policy_saver.PolicySaver`.

    Specs come from the directory's `policy_specs.pbtxt`; the saved `action`
    function already has a None batch dimension. The version is the saved
    train step.

    Args:
      path: the SavedModel directory.
    """

    kind = "saved_model"
    supports_seed = False

    def __init__(self, path: str):
        self.path = path
        self.policy = tf.saved_model.load(path)
        spec_path = os.path.join(path, policy_saver.POLICY_SPECS_PBTXT)
        loaded = policy_saver.specs_from_collect_data_spec(tensor_spec.from_pbtxt_file(spec_path))
        arrays = tensor_spec.to_nest_array_spec
        specs = PolicySpecs(
            time_step_spec=arrays(loaded["time_step_spec"]), action_spec=arrays(loaded["action_spec"]),
            policy_state_spec=arrays(loaded["policy_state_spec"]), info_spec=arrays(loaded["info_spec"]),
            collect_data_spec=arrays(loaded["collect_data_spec"]))
        super().__init__(specs, int(self.policy.get_train_step().numpy()))
        # A policy without variables (e.g. RandomTFPolicy) is saved without the attribute.
        self._variables = list(getattr(self.policy, "model_variables", ()))
        signature = (_batched_signature(loaded["time_step_spec"]), _batched_signature(loaded["policy_state_spec"]))
        try:
            self._action_fn = _FlatCall(self.policy.action, *signature)
        except (ValueError, TypeError):  # saved with another signature: call it as saved
            self._action_fn = self.policy.action
        self._checkpoint = tf.train.Checkpoint(policy=self.policy)
        # What SavedModelPyTFEagerPolicy(path) does with a call, on the model loaded here.
        self._local = _LocalWrappers(lambda batch_time_steps: py_tf_eager_policy.PyTFEagerPolicyBase(
            self.policy, specs.time_step_spec, specs.action_spec, specs.policy_state_spec, specs.info_spec,
            batch_time_steps=batch_time_steps))

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        if seed is not None:
            raise UnsupportedSeedError("a SavedModel policy cannot take a per-call seed")
        return to_numpy(self._action_fn(time_step, policy_state))

    def local_action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        local = self._local.for_step(time_step)
        return to_numpy(local.action(time_step, policy_state, seed=seed) if seed is not None else
                        local.action(time_step, policy_state))

    def local_initial_state(self, batch_size: int | None) -> Any:
        return to_numpy(self._local.single.get_initial_state(batch_size))

    def initial_state(self, batch_size: int | None) -> Any:
        # The saved function always adds a batch dimension (0 would give zero
        # rows): ask for one row and drop the dimension for an unbatched state.
        state = to_numpy(self.policy.get_initial_state(batch_size or 1))
        if not batch_size:
            state = tree.map_structure(lambda s: s[0], state)
        return state

    def variable_values(self) -> list[np.ndarray]:
        try:  # saved without variables (RandomTFPolicy): SavedModelPyTFEagerPolicy.variables() raises
            getattr(self.policy, "model_variables")
        except AttributeError as e:
            raise raised.from_policy(e) from None  # the client raises it as an AttributeError
        return super().variable_values()

    def load_checkpoint(self, path: str) -> None:
        """Loads a PolicySaver checkpoint (`<path>/variables/variables`).

        As SavedModelPyTFEagerPolicy.update_from_checkpoint: every variable of
        the policy must be in the checkpoint; extra ones are ignored.
        """
        prefix = os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME)
        self._checkpoint.read(prefix).assert_existing_objects_matched().expect_partial()


class GraphBackend(Backend):
    """A `PyTFPolicy` in graph mode, in its own graph and session.

    Builds placeholders with a None batch dimension (instead of PyTFPolicy's
    fixed batch size), initializes the variables and, given `policy_dir`,
    restores them from that checkpoint directory exactly like
    `PyTFPolicy.restore(policy_dir)`. The version is the restored global step.

    Args:
      policy: a `PyTFPolicy` whose TF policy was built inside `graph`, or the
        TF policy itself.
      graph: the graph the policy was built in.
      policy_dir: optional checkpoint directory written by `PyTFPolicy.save`
        (or any `common.Checkpointer(policy=...)`).
      session: optional session on `graph`; one is created otherwise.
    """

    kind = "py_tf_policy"
    supports_seed = False

    def __init__(self, policy: Any, graph: tf.Graph, *, policy_dir: str | None = None,
                 session: tf.compat.v1.Session | None = None):
        tf_pol = policy._tf_policy if isinstance(policy, py_tf_policy.PyTFPolicy) else policy  # pylint: disable=protected-access
        self.graph = graph
        self.session = session or tf.compat.v1.Session(graph=graph)
        with graph.as_default():
            self._time_step = tensor_spec.to_nest_placeholder(tf_pol.time_step_spec, outer_dims=[None])
            self._state = tensor_spec.to_nest_placeholder(tf_pol.policy_state_spec, outer_dims=[None])
            self._step = tf_pol.action(self._time_step, self._state)
            self._batch_size = tf.compat.v1.placeholder(tf.int32, (), name="initial_state_batch_size")
            self._initial_state = tf_pol.get_initial_state(batch_size=self._batch_size)
            global_step = tf.compat.v1.train.get_or_create_global_step()
            common.initialize_uninitialized_variables(self.session, tf.nest.flatten(tf_pol.variables()))
            if policy_dir:
                checkpointer = common.Checkpointer(ckpt_dir=policy_dir, policy=tf_pol, global_step=global_step)
                status = checkpointer.initialize_or_restore(self.session)
                with self.session.as_default():
                    status.run_restore_ops()
            else:
                self.session.run(global_step.initializer)
            version = int(self.session.run(global_step))
            self._variables = tf.nest.flatten(tf_pol.variables())
            self._feeds = [tf.compat.v1.placeholder(v.dtype.base_dtype, v.shape) for v in self._variables]
            self._assign_op = tf.group(*(v.assign(p) for v, p in zip(self._variables, self._feeds)))
        super().__init__(specs_of(tf_pol), version)
        self.tf_policy = tf_pol

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        if seed is not None:
            raise UnsupportedSeedError("`seed` is passed to the class as an argument.")
        feed = dict(zip(tf.nest.flatten(self._time_step), tree.flatten(time_step)))
        feed.update(zip(tf.nest.flatten(self._state), tree.flatten(policy_state)))
        return ps_lib.PolicyStep(*self.session.run(self._step, feed))

    def variable_specs(self) -> list[VariableSpec]:
        return _variable_specs(self._variables)

    def variable_values(self) -> list[np.ndarray]:
        return self.session.run(self._variables)

    def assign_variables(self, values) -> None:
        self.session.run(self._assign_op, dict(zip(self._feeds, values)))

    def initial_state(self, batch_size: int | None) -> Any:
        if not tree.flatten(self.specs.policy_state_spec):
            return ()
        state = self.session.run(self._initial_state, {self._batch_size: batch_size or 1})
        if batch_size is None:
            state = tree.map_structure(lambda s: s[0], state)
        return state

    def local_initial_state(self, batch_size: int | None) -> Any:
        # PyTFPolicy builds its state for `batch_size or 1` rows, and returns them all.
        if not tree.flatten(self.specs.policy_state_spec):
            return ()
        return self.session.run(self._initial_state, {self._batch_size: batch_size or 1})


def backend_for(policy: Any) -> Backend:
    """The backend that hosts `policy` as it is.

    A Backend is itself; a TFPolicy or PyTFEagerPolicy runs on EagerBackend; a
    string is a PolicySaver SavedModel directory; any other PyPolicy runs on
    PyPolicyBackend, called once per request.

    Raises:
      TypeError: a graph-mode PyTFPolicy (build a GraphBackend with its graph)
        or something that is not a policy.
    """
    if isinstance(policy, Backend):
        return policy
    if isinstance(policy, str):
        return SavedModelBackend(policy)
    if isinstance(policy, (tf_policy.TFPolicy, py_tf_eager_policy.PyTFEagerPolicyBase)):
        return EagerBackend(policy)
    if isinstance(policy, py_tf_policy.PyTFPolicy):
        raise TypeError("a graph-mode PyTFPolicy needs its graph: serve GraphBackend(policy, graph, policy_dir=...)")
    if isinstance(policy, py_policy.PyPolicy):
        return PyPolicyBackend(policy)
    raise TypeError(f"cannot serve a {type(policy).__name__}: expected a Backend, a TFPolicy, a PyPolicy "
                    "or a SavedModel path")
