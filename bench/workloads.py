"""Benchmark workloads: zero-argument policy factories (for `--factory`) and TF-free random time steps."""

from __future__ import annotations

from typing import Any

import numpy as np

WORKLOADS = ("cartpole", "atari")
ATARI_SHAPE = (84, 84, 4)
ATARI_ACTIONS = 6


def cartpole_policy() -> Any:
    """The CartPole MLP: examples/cartpole.py's greedy QPolicy over a 64x64 QNetwork (random weights)."""
    from examples import cartpole  # pylint: disable=import-outside-toplevel

    return cartpole.cartpole_q_policy()


def atari_policy(seed: int = 0) -> Any:
    """An Atari-sized greedy Q policy: 84x84x4 uint8 in, Nature-DQN conv stack, fc 512, 6 actions."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_agents.networks import q_network  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import greedy_policy, q_policy  # pylint: disable=import-outside-toplevel
    from tf_agents.specs import tensor_spec  # pylint: disable=import-outside-toplevel
    from tf_agents.trajectories import time_step as ts  # pylint: disable=import-outside-toplevel

    tf.random.set_seed(seed)
    observation_spec = tensor_spec.BoundedTensorSpec(ATARI_SHAPE, tf.uint8, 0, 255, name="observation")
    action_spec = tensor_spec.BoundedTensorSpec((), tf.int64, 0, ATARI_ACTIONS - 1, name="action")
    network = q_network.QNetwork(
        observation_spec, action_spec,
        preprocessing_layers=tf.keras.layers.Lambda(lambda x: tf.cast(x, tf.float32) / 255.0),
        conv_layer_params=((32, 8, 4), (64, 4, 2), (64, 3, 1)), fc_layer_params=(512,))
    network.create_variables(observation_spec)
    time_step_spec = ts.time_step_spec(observation_spec, tensor_spec.TensorSpec((), tf.float32, name="reward"))
    return greedy_policy.GreedyPolicy(q_policy.QPolicy(time_step_spec, action_spec, q_network=network))


def policy_for(workload: str) -> Any:
    """The TF policy of `workload` (imports TensorFlow)."""
    return {"cartpole": cartpole_policy, "atari": atari_policy}[workload]()


def factory_arg(workload: str) -> str:
    """The `policy-server --factory` value serving `workload` under its own name."""
    return f"{workload}=bench.workloads:{workload}_policy"


class Observations:
    """A fresh random valid observation per call (numpy only)."""

    def __init__(self, workload: str, seed: int = 0):
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")
        self.workload = workload
        self.rng = np.random.default_rng(seed)

    def __call__(self, rows: int = 0) -> np.ndarray:
        outer = (rows,) if rows else ()
        if self.workload == "cartpole":
            return self.rng.uniform(-0.2, 0.2, size=outer + (4,)).astype(np.float32)
        return self.rng.integers(0, 256, size=outer + ATARI_SHAPE, dtype=np.uint8)


def step_fields(observation: np.ndarray, rows: int = 0) -> dict[str, np.ndarray]:
    """The TimeStep fields (a MID step) around `observation`, unbatched (rows=0) or with `rows` rows."""
    outer = (rows,) if rows else ()
    return {"step_type": np.ones(outer, np.int32), "reward": np.zeros(outer, np.float32),
            "discount": np.ones(outer, np.float32), "observation": observation}
