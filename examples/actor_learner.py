"""A real actor-learner run on one machine: DQN on CartPole through the policy server.

Processes: this one runs a Reverb replay server and the learner
(`tf_agents.train.Learner` over a DqnAgent); a policy server process hosts
the collect policy ("cartpole_collect", epsilon-greedy) and the greedy policy
("cartpole"); collect actor processes run `tf_agents.train.Actor` with a
`RemotePolicy` and a Reverb observer; an eval actor measures the greedy
policy's average return. The learner pushes new weights to the policy server
every `push_interval` train steps; every action carries the version (train
step) that produced it.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import tempfile
import time
from typing import Any

from examples.serving_demo import actor_context, start_server, stop_server
from policy_server.telemetry.logs import native_stderr_silenced

TABLE = "uniform_table"
COLLECT, GREEDY = "cartpole_collect", "cartpole"


@dataclasses.dataclass
class Config:
    """Settings of one run (defaults: the `make demo` run)."""

    collect_actors: int = 2
    max_seconds: float = 540.0
    target_return: float = 195.0  # CartPole-v0 counts as solved at 195
    max_train_steps: int = 60_000
    initial_collect_steps: int = 1000
    replay_capacity: int = 100_000
    batch_size: int = 64
    learning_rate: float = 1e-3
    target_update_period: int = 100
    epsilon: float = 0.1
    push_interval: int = 100  # train steps between weight pushes
    train_iterations_per_call: int = 100
    eval_episodes: int = 10
    report_interval: float = 10.0
    seed: int = 0


def _collect_actor(actor_id: int, policy_address: str, reverb_address: str, stop: Any, reports: Any) -> None:
    """A collect actor process: Actor + RemotePolicy + Reverb observer."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import reverb  # pylint: disable=import-outside-toplevel
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel
    from tf_agents.replay_buffers import reverb_utils  # pylint: disable=import-outside-toplevel
    from tf_agents.train import actor  # pylint: disable=import-outside-toplevel
    from tf_agents.train.utils import train_utils  # pylint: disable=import-outside-toplevel

    from policy_client import RemotePolicy  # pylint: disable=import-outside-toplevel

    env = suite_gym.load("CartPole-v0")
    env.seed(1000 + actor_id)
    train_step = train_utils.create_train_step()
    with RemotePolicy(policy_address, COLLECT) as policy:
        observer = reverb_utils.ReverbAddTrajectoryObserver(
            reverb.Client(reverb_address), TABLE, sequence_length=2, stride_length=1)
        collector = actor.Actor(env, policy, train_step, steps_per_run=100, observers=[observer])
        steps = 0
        while not stop.is_set():
            collector.run()
            steps += 100
            train_step.assign(policy.last_version)  # tags the actor's summaries with the version
            reports.put(("collect", actor_id, steps, policy.last_version))
        observer.close()


def _eval_actor(policy_address: str, episodes: int, stop: Any, reports: Any) -> None:
    """The eval actor: average return of the greedy policy, with the version that played."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel
    from tf_agents.train import actor  # pylint: disable=import-outside-toplevel
    from tf_agents.train.utils import train_utils  # pylint: disable=import-outside-toplevel

    from policy_client import RemotePolicy  # pylint: disable=import-outside-toplevel

    env = suite_gym.load("CartPole-v0")
    env.seed(7)
    with RemotePolicy(policy_address, GREEDY) as policy:
        evaluator = actor.Actor(env, policy, train_utils.create_train_step(), episodes_per_run=episodes,
                                metrics=actor.eval_metrics(episodes))
        while not stop.is_set():
            version = policy.last_version
            evaluator.run()
            results = {m.name: float(m.result()) for m in evaluator.metrics}
            reports.put(("eval", results["AverageReturn"], version, policy.last_version))
            for metric in evaluator.metrics:
                metric.reset()


def replay_server(collect_data_spec: Any, config: Config) -> Any:
    import reverb  # pylint: disable=import-outside-toplevel
    from tf_agents.specs import tensor_spec  # pylint: disable=import-outside-toplevel

    signature = tensor_spec.add_outer_dim(tensor_spec.from_spec(collect_data_spec), 2)
    table = reverb.Table(TABLE, max_size=config.replay_capacity, sampler=reverb.selectors.Uniform(),
                         remover=reverb.selectors.Fifo(),
                         rate_limiter=reverb.rate_limiters.MinSize(config.initial_collect_steps),
                         signature=signature)
    return reverb.Server([table], port=None)


class _Progress:
    """What the actors reported, for progress lines and the result."""

    def __init__(self) -> None:
        self.collect_steps: dict[int, int] = {}
        self.actor_versions: dict[int, int] = {}
        self.evals: list[tuple[float, int]] = []  # (average return, version)
        self.version_went_back = False
        self.versions_seen: set[int] = set()  # every policy version a collect actor reported acting with

    def drain(self, reports: Any) -> None:
        while True:
            try:
                report = reports.get_nowait()
            except queue.Empty:
                return
            if report[0] == "collect":
                _, actor_id, steps, version = report
                if version < self.actor_versions.get(actor_id, 0):
                    self.version_went_back = True
                self.collect_steps[actor_id] = steps
                self.actor_versions[actor_id] = version
                self.versions_seen.add(version)
            else:
                self.evals.append((report[1], report[3]))

    @property
    def env_steps(self) -> int:
        return sum(self.collect_steps.values())

    @property
    def last_return(self) -> float | None:
        return self.evals[-1][0] if self.evals else None


def make_agent(config: Config) -> Any:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_agents.agents.dqn import dqn_agent  # pylint: disable=import-outside-toplevel
    from tf_agents.train.utils import train_utils  # pylint: disable=import-outside-toplevel
    from tf_agents.utils import common  # pylint: disable=import-outside-toplevel

    from examples import cartpole as demo_policy  # pylint: disable=import-outside-toplevel

    tf.random.set_seed(config.seed)
    train_step = train_utils.create_train_step()
    agent = dqn_agent.DqnAgent(
        demo_policy.cartpole_time_step_spec(), demo_policy.ACTION_SPEC,
        q_network=demo_policy.cartpole_q_network(), optimizer=tf.keras.optimizers.Adam(config.learning_rate),
        epsilon_greedy=config.epsilon, target_update_period=config.target_update_period,
        td_errors_loss_fn=common.element_wise_squared_loss, gamma=0.99, train_step_counter=train_step)
    agent.initialize()
    return agent, train_step


def run(config: Config = Config(), root_dir: str | None = None, log: Any = print) -> dict[str, Any]:
    """Trains until the target return, max_train_steps or max_seconds; returns the result.

    Args:
      root_dir: the learner's directory (tf_agents.train.Learner's root_dir),
        kept; None: a temporary directory, removed when the run ends.

    Raises:
      RuntimeError: a process failed to start.
    """
    temporary = root_dir is None
    if temporary:
        root_dir = tempfile.mkdtemp(prefix="actor_learner_")
    try:
        return _run(config, root_dir, log, temporary)
    finally:
        if temporary:
            shutil.rmtree(root_dir, ignore_errors=True)


def _run(config: Config, root_dir: str, log: Any, temporary: bool) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_agents.replay_buffers import reverb_replay_buffer  # pylint: disable=import-outside-toplevel
    from tf_agents.train import learner  # pylint: disable=import-outside-toplevel

    from policy_client import VariablePublisher  # pylint: disable=import-outside-toplevel

    start = time.monotonic()
    agent, train_step = make_agent(config)
    # Reverb's C++ code writes INFO lines to stderr with no level to turn down
    # (server start and stop, each sampler); they are silenced where they come.
    quiet = os.environ.get("TFA_POLICY_DEMO_VERBOSE") != "1"
    with native_stderr_silenced(quiet):
        replay = replay_server(agent.collect_data_spec, config)
    reverb_address = f"127.0.0.1:{replay.port}"
    server, policy_address = start_server(["--demo", "--max-batch-size", "64"])
    ctx = actor_context()
    stop, reports = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_collect_actor, args=(i, policy_address, reverb_address, stop, reports),
                         daemon=True) for i in range(config.collect_actors)]
    procs.append(ctx.Process(target=_eval_actor, args=(policy_address, config.eval_episodes, stop, reports),
                             daemon=True))
    progress = _Progress()
    try:
        publishers = [VariablePublisher(policy_address, name) for name in (COLLECT, GREEDY)]
        for publisher in publishers:  # actors start from the learner's initial weights
            publisher.push(agent.collect_policy.variables(), 0)
        for proc in procs:
            proc.start()
        log(f"policy server {policy_address}, replay {reverb_address}, {config.collect_actors} collect "
            f"actors + 1 eval actor; learner in {root_dir}{' (temporary)' if temporary else ''}")
        buffer = reverb_replay_buffer.ReverbReplayBuffer(agent.collect_data_spec, TABLE, sequence_length=2,
                                                         local_server=replay)
        dataset = buffer.as_dataset(sample_batch_size=config.batch_size, num_steps=2).prefetch(3)
        trainer = learner.Learner(root_dir, train_step, agent, lambda: dataset, checkpoint_interval=10**9,
                                  summary_interval=10**9)
        with native_stderr_silenced(quiet):  # every process is started: only this one's C++ output
            _train(config, trainer, train_step, publishers, progress, reports, procs, start, log)
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.terminate()
        server_code = stop_server(server)
        with native_stderr_silenced(quiet):
            replay_items = _table_size(replay, reverb_address)
            replay.stop()
    progress.drain(reports)
    result = _result(progress, int(train_step.numpy()), time.monotonic() - start, server_code,
                     config.target_return)
    result["replay_items"] = replay_items
    log(f"RESULT: average return {result['final_return']:.1f} (best {result['best_return']:.1f}) "
        f"after {result['train_steps']} train steps and {result['env_steps']} env steps in "
        f"{result['seconds']:.0f}s; policy version {result['version']}; "
        f"target {config.target_return:.0f} {'reached' if result['reached'] else 'not reached'}")
    return result


def _train(config: Config, trainer: Any, train_step: Any, publishers: list, progress: _Progress,
           reports: Any, procs: list, start: float, log: Any) -> None:
    """The learner loop: train, push, report, until a stop condition."""
    last_report = 0.0
    last_push_step = 0
    while True:
        progress.drain(reports)
        elapsed = time.monotonic() - start
        step = int(train_step.numpy())
        if any(not p.is_alive() and p.exitcode not in (0, None) for p in procs):
            raise RuntimeError("an actor process died; see its output above")
        solved = progress.last_return is not None and progress.last_return >= config.target_return
        if solved or elapsed > config.max_seconds or step >= config.max_train_steps:
            return
        trainer.run(iterations=config.train_iterations_per_call)
        step = int(train_step.numpy())
        if step - last_push_step >= config.push_interval:
            for publisher in publishers:
                publisher.push(trainer._agent.collect_policy.variables(), step)  # pylint: disable=protected-access
            last_push_step = step
        if time.monotonic() - last_report >= config.report_interval:
            last_report = time.monotonic()
            versions = list(progress.actor_versions.values())
            ret = "-" if progress.last_return is None else f"{progress.last_return:.1f}"
            log(f"[{elapsed:5.0f}s] env steps {progress.env_steps:7d} ({progress.env_steps / max(elapsed, 1e-9):4.0f}/s) "
                f"| train step {step:6d} | actors at version {min(versions, default=0)}..{max(versions, default=0)} "
                f"| eval return {ret}")


def _table_size(replay: Any, address: str) -> int:
    import reverb  # pylint: disable=import-outside-toplevel

    del replay  # the server must still be up
    return int(reverb.Client(address).server_info()[TABLE].current_size)


def _result(progress: _Progress, train_steps: int, seconds: float, server_code: int,
            target: float) -> dict[str, Any]:
    returns = [r for r, _ in progress.evals]
    return {
        "final_return": returns[-1] if returns else 0.0,
        "best_return": max(returns, default=0.0),
        "reached": bool(returns) and max(returns) >= target,
        "evals": progress.evals,
        "train_steps": train_steps,
        "env_steps": progress.env_steps,
        "version": max(progress.actor_versions.values(), default=0),
        "actor_versions_monotonic": not progress.version_went_back,
        "actor_versions_seen": sorted(progress.versions_seen),
        "seconds": seconds,
        "server_exit_code": server_code,
    }
