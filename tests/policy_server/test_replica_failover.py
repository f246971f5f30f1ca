"""Three replicas behind one `ipv4:a,b,c` target: actors keep acting while one is SIGKILLed and another SIGTERMed,
each restarted on its port, while a learner publishes new versions.

Every answer is checked (the right action for that actor's step and for the
version that answered), no call may fail, and no actor may see a version
older than one it saw (RemotePolicy sends min_version: a restarted replica
that is behind waits to catch up before answering). The figures are printed.

- fast (make test): EchoBackend replicas, the learner pushing every version
  to all of them through FanOutPublisher; 4 actors; the two replicas go down
  together (one serves alone) and restart together.
- slow (make test-all): CartPole DQN SavedModel replicas following one
  PolicySaver checkpoint directory (`--follow-checkpoints`), the learner
  writing a checkpoint a second with PolicySavedModelTrigger; 8 actors.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient
from policy_client import FanOutPublisher
from tests.support.failover import FailoverActor, Replicas, print_figures, run_failover

pytestmark = [pytest.mark.timeout(600)]

TRANSPORTS = ("stream", "unary")
DEADLINE = 60.0  # each call's; a replica restarts in 3 to 20 s on a loaded 2-core machine


def restart_two(replicas: Replicas, figures: dict, together: bool = False) -> None:
    """SIGKILL replica 0 and start it again; then SIGTERM replica 1 (a drain) and start it again.

    `together`: both at once (one replica serves alone meanwhile), then both restart at once.
    """
    first, second = replicas.servers[0], replicas.servers[1]
    started = time.monotonic()
    first.kill()
    if together:
        figures["replica 1 SIGTERM exit code"] = second.terminate(DEADLINE)
        first.start(wait=False)
        second.start(wait=False)
        first.wait_serving()
        second.wait_serving()
        figures["replicas 0 and 1 back in s"] = round(time.monotonic() - started, 1)
        return
    figures["replica 0 back in s"] = round(first.start(), 1)
    figures["replica 1 SIGTERM exit code"] = second.terminate(DEADLINE)
    figures["replica 1 back in s"] = round(second.start(), 1)


class Learner(threading.Thread):
    """Calls `publish(version)` every `interval` s with versions 1, 2, ... (times `scale`) until stopped."""

    def __init__(self, publish, interval: float, scale: int = 1):
        super().__init__(name="learner", daemon=True)
        self.publish, self.interval, self.scale = publish, interval, scale
        self.stop = threading.Event()
        self.version = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.version += self.scale
            self.errors += self.publish(self.version)

    def __enter__(self) -> "Learner":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(60)


def check_figures(figures: dict, record_property) -> None:
    print_figures(f"failover, {figures['actors']} actors over 3 replicas", figures)
    for key, value in figures.items():
        record_property(key, value)
    assert figures["calls"] > 0 and figures["ok"] == figures["calls"], figures["samples"]
    assert figures["failed"] == figures["lost"] == figures["wrong (crossed or duplicated)"] == 0, figures["samples"]
    assert figures["versions backwards"] == 0, figures["samples"]
    assert figures["every actor answered after"] and not figures["stuck actors"]
    assert figures["replica 1 SIGTERM exit code"] == 0


def echo_step(actor: int, step: int) -> ts.TimeStep:
    return ts.restart(np.array([actor, step, 0], np.float32))


def echo_check(actor: int, step: int, answer, version: int) -> bool:
    # The learner pushes bias = version: the answer says whose step it is and which version made it.
    return np.array_equal(answer.action, 2 * np.array([actor, step, 0], np.float32) + version)


def test_actors_survive_a_sigkill_and_a_sigterm_of_replicas_while_a_learner_pushes(record_property):
    with Replicas(3, ["stateless=tests.reliability.backends:stateless_echo"]) as replicas:
        replicas.start()
        with FanOutPublisher(replicas.target, "stateless", timeout=2.0) as publisher:
            def publish(version: int) -> int:
                return len(publisher.push([np.float32(version)], version).errors)

            with Learner(publish, 0.2) as learner:
                stop = threading.Event()
                actors = [FailoverActor(i, replicas.target, "stateless", echo_step, echo_check, stop,
                                        transport=TRANSPORTS[i % 2], timeout=DEADLINE) for i in range(4)]
                figures: dict = {}
                figures.update(run_failover(actors, lambda: restart_two(replicas, figures, together=True),
                                            before=1.5, after=1.5))
            figures["versions published"] = learner.version
            figures["pushes refused by a replica that was down"] = learner.errors
        # The restarted replicas take pushes again (a channel may still be in its reconnect backoff
        # right after the run: a fresh publisher, waiting for ready, does not depend on that timing).
        final = learner.version + 1
        with FanOutPublisher(replicas.target, "stateless", timeout=DEADLINE) as publisher:
            assert not publisher.push([np.float32(final)], final).errors
        served = [_version(s.address, "stateless") for s in replicas.servers]
    check_figures(figures, record_property)
    assert served == [final] * 3, served


def _version(address: str, policy: str) -> int:
    with PolicyClient(address, policy, timeout=DEADLINE) as client:
        return client.get_specs()[1]


@pytest.mark.slow
def test_actors_survive_failover_of_replicas_following_one_checkpoint_directory(tmp_path, record_property):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_agents.agents.dqn import dqn_agent  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel
    from tf_agents.train import triggers  # pylint: disable=import-outside-toplevel
    from tf_agents.train.utils import train_utils  # pylint: disable=import-outside-toplevel

    from examples import cartpole as demo_policy  # pylint: disable=import-outside-toplevel

    weight_sets = [demo_policy.cartpole_q_policy(seed=s) for s in (0, 3, 5)]
    observations = np.random.default_rng(0).uniform(-0.3, 0.3, size=(64, 4)).astype(np.float32)

    def cartpole_step(obs):
        return ts.TimeStep(np.array(0, np.int32), np.array(0, np.float32), np.array(1, np.float32), obs)

    expected = [[int(py_tf_eager_policy.PyTFEagerPolicy(p).action(cartpole_step(o)).action) for o in observations]
                for p in weight_sets]
    assert len({tuple(e) for e in expected}) == 3  # the weight sets act differently
    train_step = train_utils.create_train_step()
    agent = dqn_agent.DqnAgent(demo_policy.cartpole_time_step_spec(), demo_policy.ACTION_SPEC,
                               q_network=demo_policy.cartpole_q_network(), optimizer=tf.keras.optimizers.Adam(),
                               train_step_counter=train_step)
    set_of_version = {0: 0}

    def assign(k: int) -> None:
        for variable, value in zip(agent.policy.variables(), weight_sets[k].variables()):
            variable.assign(value)

    assign(0)
    policies_dir = str(tmp_path / "policies")
    trigger = triggers.PolicySavedModelTrigger(policies_dir, agent, train_step, interval=1)  # writes the SavedModels

    def publish(version: int) -> int:  # what tf_agents.train.Learner does every `interval` train steps
        k = (version // 10) % 3
        assign(k)
        train_step.assign(version)
        set_of_version[version] = k
        trigger(version)
        return 0

    def check(actor: int, step: int, answer, version: int) -> bool:
        k = set_of_version.get(version)
        return k is not None and int(answer.action) == expected[k][(actor * 7 + step) % len(observations)]

    flags = ["--policy", f"greedy={os.path.join(policies_dir, 'greedy_policy')}",
             "--follow-checkpoints", f"greedy={os.path.join(policies_dir, 'checkpoints')}", "--follow-interval", "0.2"]
    with Replicas(3, args=flags) as replicas:
        replicas.start()
        with Learner(publish, 1.0, scale=10) as learner:
            stop = threading.Event()
            actors = [FailoverActor(i, replicas.target, "greedy",
                                    lambda a, s: cartpole_step(observations[(a * 7 + s) % len(observations)]),
                                    check, stop, transport=TRANSPORTS[i % 2], timeout=DEADLINE) for i in range(8)]
            figures: dict = {}
            figures.update(run_failover(actors, lambda: restart_two(replicas, figures), before=3.0, after=3.0))
        figures["versions published"] = learner.version // 10
        time.sleep(1.0)  # the followers' last poll
        served = [_version(s.address, "greedy") for s in replicas.servers]
    check_figures(figures, record_property)
    assert min(served) == learner.version, served  # every replica follows the newest checkpoint
