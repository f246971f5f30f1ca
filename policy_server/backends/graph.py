"""A `PyTFPolicy` in graph mode, served in its own graph and session."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tree
from tf_agents.policies import py_tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step as ps_lib
from tf_agents.utils import common

from policy_server.backends.base import Backend, UnsupportedSeedError, VariableSpec, specs_of
from policy_server.backends.eager import variable_specs_of


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
        # A PyTFPolicy's specs are its own (TF-Agents gives it info_spec=() whatever its TF policy's), and
        # RemotePolicy has the specs of the policy it replaces.
        super().__init__(specs_of(policy if isinstance(policy, py_tf_policy.PyTFPolicy) else tf_pol), version)
        self.tf_policy = tf_pol

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        if seed is not None:
            raise UnsupportedSeedError("`seed` is passed to the class as an argument.")
        feed = dict(zip(tf.nest.flatten(self._time_step), tree.flatten(time_step)))
        feed.update(zip(tf.nest.flatten(self._state), tree.flatten(policy_state)))
        return ps_lib.PolicyStep(*self.session.run(self._step, feed))

    def variable_specs(self) -> list[VariableSpec]:
        return variable_specs_of(self._variables)

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
