"""RemotePolicy as a drop-in PyPolicy: errors, drivers, Actor, load(), threads, reconnects."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from tf_agents.environments import suite_gym
from tf_agents.policies import policy_saver, py_policy, py_tf_eager_policy
from tf_agents.train import actor
from tf_agents.train.utils import train_utils
from tf_agents.trajectories import time_step as ts

import policy_client
from policy_client import PolicyNotFoundError, RemoteError, RemotePolicy
from policy_server.server import BackgroundServer
from policy_server.backends.eager import EagerBackend
from policy_server.backends.saved_model import SavedModelBackend
from tests.support.fakes import EchoBackend, echo_time_step
from tests.policy_client.test_equivalence import assert_nests_close

OBS = np.array([0.01, -0.02, 0.03, 0.04], np.float32)


@pytest.fixture(scope="module")
def cartpole_server(cartpole_tf_policy):
    with BackgroundServer({"cartpole": EagerBackend(cartpole_tf_policy, version=5)}) as server:
        yield server


@pytest.fixture(scope="module", params=["stream", "unary"])
def remote(request, cartpole_server):
    with RemotePolicy(cartpole_server.address, "cartpole", transport=request.param) as policy:
        yield policy


@pytest.fixture(scope="module")
def local(cartpole_tf_policy):
    return py_tf_eager_policy.PyTFEagerPolicy(cartpole_tf_policy, use_tf_function=True)


def test_is_a_py_policy_with_the_served_version(remote):
    assert isinstance(remote, py_policy.PyPolicy)
    remote.action(ts.restart(OBS))
    assert remote.last_version == 5


BAD_INPUTS = {
    "short observation": ts.restart(np.zeros(3, np.float32)),
    "float64 observation": ts.restart(OBS.astype(np.float64)),
    "two outer dimensions": ts.restart(np.zeros((2, 3, 4), np.float32), batch_size=6)._replace(
        step_type=np.zeros((2, 3), np.int32)),
    "int observation": ts.restart(np.array([1, 0, 0, 1])),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_inputs_off_the_spec_do_what_the_local_policy_does(remote, cartpole_tf_policy, name):
    """The hosted policy's own code casts or raises: the same result, or the same exception type."""
    # Its own local policy: a tf.function fed many shapes relaxes them (and then fails on valid ones).
    local = py_tf_eager_policy.PyTFEagerPolicy(cartpole_tf_policy)
    time_step = BAD_INPUTS[name]
    try:
        expected = local.action(time_step)
    except Exception as e:  # pylint: disable=broad-except
        with pytest.raises(type(e)) as info:
            remote.action(time_step)
        assert isinstance(info.value, RemoteError)
    else:
        assert_nests_close(expected, remote.action(time_step))
    assert remote.action(ts.restart(OBS)).action.shape == (), "the server goes on serving"


def test_wrong_structure_raises_like_tf_nest(remote):
    with pytest.raises((ValueError, TypeError)):
        remote.action(ts.restart({"observation": OBS}))


def test_plain_numbers_are_converted_to_spec_dtypes(remote, local):
    time_step = ts.TimeStep(step_type=0, reward=0.0, discount=1.0, observation=OBS)
    assert_nests_close(local.action(time_step), remote.action(time_step))


def test_unknown_policy_is_policy_not_found(cartpole_server):
    with pytest.raises(PolicyNotFoundError, match="no policy named 'nope'") as info:
        RemotePolicy(cartpole_server.address, "nope")
    assert isinstance(info.value, LookupError)


def test_unreachable_server_fails_within_deadline():
    with pytest.raises(RemoteError):
        RemotePolicy("127.0.0.1:1", "x", timeout=1.0)


def test_actor_with_observers_and_metrics_matches_local(remote, local):
    results = []
    for policy in (local, remote):
        env = suite_gym.load("CartPole-v0")
        env.seed(11)
        observed = []
        collector = actor.Actor(env, policy, train_utils.create_train_step(), steps_per_run=120,
                                observers=[observed.append], metrics=actor.collect_metrics(buffer_size=10))
        collector.run()
        results.append(([t.action for t in observed], {m.name: float(m.result()) for m in collector.metrics}))
    (local_actions, local_metrics), (remote_actions, remote_metrics) = results
    assert len(remote_actions) == len(local_actions) >= 120
    np.testing.assert_array_equal(np.array(local_actions), np.array(remote_actions))
    assert remote_metrics == local_metrics
    assert remote_metrics["NumberOfEpisodes"] >= 1


def test_many_threads_share_one_remote_policy(remote, local):
    rng = np.random.default_rng(0)
    observations = rng.uniform(-0.2, 0.2, size=(8, 25, 4)).astype(np.float32)
    expected = [[int(local.action(ts.restart(o)).action) for o in thread_obs] for thread_obs in observations]
    got: list[list[int]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        got[i] = [int(remote.action(ts.restart(o)).action) for o in observations[i]]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == expected


def test_action_async_pipelines(remote, local):
    observations = np.random.default_rng(1).uniform(-0.2, 0.2, size=(16, 4)).astype(np.float32)
    futures = [remote.action_async(ts.restart(o)) for o in observations]
    for o, future in zip(observations, futures):
        assert_nests_close(local.action(ts.restart(o)), future.result(timeout=30))
    with pytest.raises(ValueError):  # raised by the hosted policy, as locally
        remote.action_async(ts.restart(np.zeros(2, np.float32))).result(timeout=30)


def test_load_swaps_local_for_remote_with_one_line(tmp_path, cartpole_tf_policy):
    path = str(tmp_path / "policy")
    policy_saver.PolicySaver(cartpole_tf_policy, batch_size=None).save(path)
    local_policy = policy_client.load(path)
    with BackgroundServer({"saved": lambda: SavedModelBackend(path)}) as server:
        remote_policy = policy_client.load(f"grpc://{server.address}/saved")
        assert isinstance(remote_policy, RemotePolicy)
        assert isinstance(local_policy, py_tf_eager_policy.SavedModelPyTFEagerPolicy)
        for prop in ("time_step_spec", "action_spec", "policy_state_spec", "info_spec", "collect_data_spec"):
            assert getattr(remote_policy, prop) == getattr(local_policy, prop), prop
        for o in np.random.default_rng(2).uniform(-0.2, 0.2, size=(10, 4)).astype(np.float32):
            assert_nests_close(local_policy.action(ts.restart(o)), remote_policy.action(ts.restart(o)))
        remote_policy.close()
    with pytest.raises(ValueError, match="host:port"):
        policy_client.load("grpc:///name")


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_reconnects_after_server_restart(transport):
    first = BackgroundServer({"echo": EchoBackend(stateful=False, version=1)})
    port = first.port
    remote = RemotePolicy(first.address, "echo", transport=transport, timeout=30)
    assert remote.action(echo_time_step([1, 2, 3])).action.tolist() == [3, 5, 7]
    first.stop()
    restarted: list[BackgroundServer] = []
    timer = threading.Timer(1.0, lambda: restarted.append(
        BackgroundServer({"echo": EchoBackend(stateful=False, version=2)}, address=f"127.0.0.1:{port}")))
    timer.start()
    try:
        step = remote.action(echo_time_step([1, 2, 3]))  # waits for the new server
        assert step.action.tolist() == [4, 6, 8]
        assert remote.last_version == 2
    finally:
        timer.join()
        remote.close()
        for server in restarted:
            server.stop()


def test_recurrent_state_round_trips_unbatched_and_batched():
    with BackgroundServer({"echo": EchoBackend()}) as server, RemotePolicy(server.address, "echo") as remote:
        state = remote.get_initial_state()
        for count in range(1, 4):
            step = remote.action(echo_time_step(np.zeros(3, np.float32)), state)
            state = step.state
            assert state["count"].shape == () and int(state["count"]) == count
        state = remote.get_initial_state(3)
        step = remote.action(echo_time_step(np.zeros((3, 3), np.float32), batch_size=3), state)
        assert step.state["count"].tolist() == [1, 1, 1]


LIGHT_CLIENT = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None  # importing tensorflow now fails
    sys.modules["tf_agents"] = None
    import numpy as np
    import policy_client
    from policy_client import PolicyClient
    from policy_client.wire.standins import TimeStep
    with PolicyClient(sys.argv[1], "echo") as client:
        specs, version = client.get_specs()
        assert type(specs.action_spec).__module__ == "policy_client.wire.standins", type(specs.action_spec)
        step = TimeStep(np.int32(0), np.float32(0), np.float32(1), np.array([1, 2, 3], np.float32))
        result = client.action(step)
        assert result.policy_step.action.tolist() == [2.0, 4.0, 6.0], result
    try:
        policy_client.RemotePolicy
    except ImportError:
        pass
    else:
        raise AssertionError("RemotePolicy should need tf_agents")
    assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None
    print("light client ok")
""")


def test_client_core_works_without_tensorflow():
    with BackgroundServer({"echo": EchoBackend(stateful=False)}) as server:
        out = subprocess.run([sys.executable, "-c", LIGHT_CLIENT, server.address], capture_output=True,
                             text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "light client ok" in out.stdout
