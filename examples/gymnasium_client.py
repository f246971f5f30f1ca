"""A Gymnasium CartPole stepped through a remote TF-Agents policy with the TF-free client (docs/light-client.md).

    pip install ./client gymnasium   # Python 3.10+, numpy 1 or 2; no TensorFlow
    python examples/gymnasium_client.py 127.0.0.1:50051   # a server: policy-server --demo
"""
import sys

import gymnasium as gym
import numpy as np

from policy_client import PolicyClient, TimeStep

env = gym.make("CartPole-v1")
with PolicyClient(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051", "cartpole") as policy:
    observation, _ = env.reset(seed=0)
    step_type, reward, total, done = 0, 0.0, 0.0, False  # 0 FIRST, then 1 MID
    while not done:
        step = TimeStep(np.int32(step_type), np.float32(reward), np.float32(1), observation.astype(np.float32))
        action = int(policy.action(step).policy_step.action)
        observation, reward, terminated, truncated, _ = env.step(action)
        step_type, total, done = 1, total + reward, terminated or truncated
    print(f"return {total:.0f} over {policy.data_plane}")
