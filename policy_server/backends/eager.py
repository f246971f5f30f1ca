"""A `TFPolicy` (or the one inside a `PyTFEagerPolicy`) served in eager mode, and the TF calls the
SavedModel backend shares with it.

Numpy values are walked with dm-tree, like everywhere else; tf.nest only walks
TensorFlow's own structures (TensorSpecs, placeholders, variables).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tree
from tf_agents.policies import py_tf_eager_policy, tf_policy
from tf_agents.specs import tensor_spec

from policy_server.backends.base import Backend, VariableSpec, specs_of, to_numpy
from policy_server.backends.executors import ExecutorTrial


def batched_signature(spec: Any) -> Any:
    """TensorSpecs of `spec` with a None outer (batch) dimension."""
    return tensor_spec.add_outer_dims_nest(tensor_spec.from_spec(spec), (None,))


def variable_specs_of(variables: list[tf.Variable]) -> list[VariableSpec]:
    return [VariableSpec(v.name, tuple(v.shape.as_list()), np.dtype(v.dtype.as_numpy_dtype)) for v in variables]


class FlatCall:
    """Calls a traced function through its concrete function with flat tensors.

    tf.function's argument binding costs about 0.5 ms per call for a TF-Agents
    time step; the server has already checked every input against the specs,
    so the call goes straight to the concrete function (3x less overhead).
    Falls back to the public call if this TensorFlow has no `_call_flat`.
    """

    def __init__(self, function: Any, *signature: Any, name: str = "the policy's action function"):
        self._concrete = function.get_concrete_function(*signature)
        self._dtypes = [spec.dtype for spec in tf.nest.flatten(signature)]
        self._flat = getattr(self._concrete, "_call_flat", None)
        self.executor = ExecutorTrial(name)  # which TF executor runs it: the faster, measured on its first calls

    def __call__(self, time_step: Any, policy_state: Any) -> Any:
        if self._flat is None:
            return self._concrete(time_step, policy_state)
        return self.call_flat(tree.flatten((time_step, policy_state)))

    def call_flat(self, leaves: list[np.ndarray]) -> Any:
        """Calls with the inputs' leaves in tf.nest order (time_step, then policy_state)."""
        if self._flat is None:
            return self._concrete(*tf.nest.pack_sequence_as(self._concrete.structured_input_signature[0], leaves))
        tensors = [_to_tensor(x, d) for x, d in zip(leaves, self._dtypes)]
        shape = leaves[0].shape if leaves else ()
        rows = int(shape[0]) if len(shape) else 1
        return self.executor.call(lambda: self._flat(tensors, self._concrete.captured_inputs), rows)


try:  # Skips tf.convert_to_tensor's registry lookup (a typing.Protocol check per call).
    from tensorflow.python.eager import context as _context  # pylint: disable=g-direct-tensorflow-import
    from tensorflow.python.framework.constant_op import convert_to_eager_tensor as _eager_tensor  # pylint: disable=g-direct-tensorflow-import

    def _to_tensor(value: np.ndarray, dtype: tf.DType) -> tf.Tensor:
        return _eager_tensor(value, _context.context(), dtype)
except ImportError:  # pragma: no cover - other TensorFlow versions
    _to_tensor = tf.convert_to_tensor


class IsolatedSeed:
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


class LocalWrappers:
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


class EagerVariables:
    """Variable access shared by the eager backends (a list of tf.Variables)."""

    _variables: list[tf.Variable]

    def variable_specs(self) -> list[VariableSpec]:
        return variable_specs_of(self._variables)

    def variable_values(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._variables]

    def assign_variables(self, values) -> None:
        for variable, value in zip(self._variables, values):
            variable.assign(value)


class EagerBackend(EagerVariables, Backend):
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
        self._local = LocalWrappers(lambda batch_time_steps: py_tf_eager_policy.PyTFEagerPolicy(
            policy, batch_time_steps=batch_time_steps))
        self._variables = tf.nest.flatten(policy.variables())
        self._signature = (batched_signature(policy.time_step_spec), batched_signature(policy.policy_state_spec))
        self._traced: FlatCall | None = None

    @property
    def _action_fn(self) -> "FlatCall":
        """The batched function, traced at the first unseeded call, as locally.

        Tracing calls the policy, and some policies build state on their first
        call (OUNoisePolicy its noise process, from that call's seed): tracing
        at load would build it before a first seeded call could. Traced with no
        global seed: its random ops then draw fresh seeds whenever TensorFlow
        re-creates their kernels (as `set_seed` in a seeded call does), instead
        of replaying the sequence a graph seed fixes at trace time.
        """
        if self._traced is None:
            with IsolatedSeed(None):
                self._traced = FlatCall(tf.function(self._run, input_signature=self._signature, autograph=False),
                                         *self._signature, name=f"{type(self.policy).__name__}.action")
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
        with IsolatedSeed(seed):
            time_step = tf.nest.map_structure(tf.convert_to_tensor, time_step)
            return to_numpy(self.policy.action(time_step, policy_state, seed=seed))

    def local_action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        local = self._local.for_step(time_step)
        if seed is None:
            return to_numpy(local.action(time_step, policy_state))
        with IsolatedSeed(seed):
            return to_numpy(local.action(time_step, policy_state, seed=seed))

    def initial_state(self, batch_size: int | None) -> Any:
        # None (not 0) asks TF-Agents for an unbatched state: 0 would give zero rows.
        return to_numpy(self.policy.get_initial_state(batch_size=batch_size or None))

    def local_initial_state(self, batch_size: int | None) -> Any:
        return to_numpy(self._local.single.get_initial_state(batch_size))
