"""A policy saved by `PolicySaver`, served from its SavedModel directory (`--policy NAME=DIR`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf
import tree
from tf_agents.policies import policy_saver, py_tf_eager_policy
from tf_agents.specs import tensor_spec

from policy_client.wire import raised
from policy_client.wire.standins import PolicySpecs
from policy_server.backends import functions
from policy_server.backends.base import Backend, TensorSignature, UnsupportedSeedError, to_numpy
from policy_server.backends.eager import EagerVariables, FlatCall, LocalWrappers, batched_signature


class SavedModelBackend(EagerVariables, Backend):
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
        signature = (batched_signature(loaded["time_step_spec"]), batched_signature(loaded["policy_state_spec"]))
        try:
            self._action_fn = FlatCall(self.policy.action, *signature, name=f"the action of SavedModel {path}")
        except (ValueError, TypeError):  # saved with another signature: call it as saved
            self._action_fn = self.policy.action
        self._checkpoint = tf.train.Checkpoint(policy=self.policy)
        self._functions = functions.saved_functions(self.policy)
        # What SavedModelPyTFEagerPolicy(path) does with a call, on the model loaded here.
        self._local = LocalWrappers(lambda batch_time_steps: py_tf_eager_policy.PyTFEagerPolicyBase(
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

    def functions(self) -> dict[str, list[TensorSignature]]:
        return {name: signature for name, (_, signature) in self._functions.items()}

    def call_function(self, name: str, args: tuple) -> Any:
        return functions.call(self._functions[name][0], args)

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
