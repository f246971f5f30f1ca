"""`make demo-ray`: DQN on CartPole across a Ray cluster: replicas and actor fleets placed and restarted by Ray.

This process (the driver, on the head node) runs Reverb and the learner
(`tf_agents.train.Learner` over a DqnAgent). Ray places two policy-server
replicas (each a real `policy-server --demo` serving the collect and the
greedy policy), four collect actors (`tf_agents.train.Actor` + `RemotePolicy`
+ a Reverb observer) and an eval actor across the nodes. Each actor's policy
prefers the replica on its own node and otherwise balances over both; the
learner pushes new weights to every replica (`FanOutPublisher` over the
`ReplicaSet`), and every actor reports the versions that acted. Ray carries
no action: actions go over gRPC, or shared memory within a node.

Usage:
  python -m examples.ray_actor_learner                      # a simulated 3-node cluster on 127.0.0.1
  python -m examples.ray_actor_learner --address HOST:6379  # a real Ray cluster (ray start --head ...)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from examples.actor_learner import COLLECT, GREEDY, TABLE, Config, make_agent, replay_server
from policy_server.telemetry import logs


def cartpole(index: int) -> Any:
    """A fleet actor's environment (imported and built in the actor's own process)."""
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel

    env = suite_gym.load("CartPole-v0")
    env.seed(1000 + index)
    return env


def reverb_observers(address: str) -> Any:
    """The collect actors' observers: trajectories into the driver's Reverb table."""
    def build(index: int) -> list:
        del index
        import reverb  # pylint: disable=import-outside-toplevel
        from tf_agents.replay_buffers import reverb_utils  # pylint: disable=import-outside-toplevel

        return [reverb_utils.ReverbAddTrajectoryObserver(reverb.Client(address), TABLE, sequence_length=2,
                                                         stride_length=1)]
    return build


def eval_metrics(episodes: int) -> Any:
    def build(index: int) -> list:
        del index
        from tf_agents.train import actor  # pylint: disable=import-outside-toplevel

        return actor.eval_metrics(episodes)
    return build


def run(config: Config, address: str | None, nodes: int, replicas: int, log: Any = print) -> dict[str, Any]:
    """Trains on a Ray cluster (a simulated one of `nodes` nodes without `address`); returns the result."""
    import ray  # pylint: disable=import-outside-toplevel

    from policy_fleet import LocalCluster  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    cluster = None
    if address is None:
        cluster = LocalCluster(nodes=nodes, num_cpus=4).start()
    else:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        log(f"Ray cluster of {len(ray.nodes())} nodes up in {time.monotonic() - started:.0f}s")
        return _run(config, replicas, started, log)
    finally:
        if cluster is not None:
            cluster.close()
        elif ray.is_initialized():
            ray.shutdown()


def _run(config: Config, replicas: int, started: float, log: Any) -> dict[str, Any]:
    import ray  # pylint: disable=import-outside-toplevel
    from tf_agents.replay_buffers import reverb_replay_buffer  # pylint: disable=import-outside-toplevel
    from tf_agents.train import learner  # pylint: disable=import-outside-toplevel

    from policy_client import FanOutPublisher  # pylint: disable=import-outside-toplevel
    from policy_fleet import ActorFleet, ReplicaSet, TFAgentsActor  # pylint: disable=import-outside-toplevel

    agent, train_step = make_agent(config)
    quiet = os.environ.get("TFA_POLICY_DEMO_VERBOSE") != "1"
    with logs.native_stderr_silenced(quiet):
        replay = replay_server(agent.collect_data_spec, config)
    reverb_address = f"{ray.util.get_node_ip_address()}:{replay.port}"
    servers = ReplicaSet.start(["--demo", "--max-batch-size", "64", "--stats-interval", "0", "--log-level", "WARNING"],
                               replicas=replicas, num_cpus=1)
    publishers = [FanOutPublisher(servers, name) for name in (COLLECT, GREEDY)]
    for publisher in publishers:  # the actors start from the learner's initial weights
        publisher.push(agent.collect_policy.variables(), 0)
    fleet_up = time.monotonic() - started
    collect = ActorFleet(servers, TFAgentsActor.factory(env_fn=cartpole, policy=COLLECT, steps_per_run=100,
                                                         observers_fn=reverb_observers(reverb_address)),
                         config.collect_actors, num_cpus=0.5)
    evaluate = ActorFleet(servers, TFAgentsActor.factory(env_fn=cartpole, policy=GREEDY, steps_per_run=None,
                                                          episodes_per_run=config.eval_episodes,
                                                          metrics_fn=eval_metrics(config.eval_episodes)),
                          1, num_cpus=0.5)
    log(f"{replicas} replicas serving at {servers.target()} ({fleet_up:.0f}s); {config.collect_actors} collect "
        f"actors + 1 eval actor; replay {reverb_address}")
    buffer = reverb_replay_buffer.ReverbReplayBuffer(agent.collect_data_spec, TABLE, sequence_length=2,
                                                     local_server=replay)
    dataset = buffer.as_dataset(sample_batch_size=config.batch_size, num_steps=2).prefetch(3)
    root_dir = tempfile.mkdtemp(prefix="ray_actor_learner_")
    trainer = learner.Learner(root_dir, train_step, agent, lambda: dataset, checkpoint_interval=10**9,
                              summary_interval=10**9)
    evals: list[tuple[float, int]] = []
    versions_back = False
    try:
        with logs.native_stderr_silenced(quiet):
            evals, versions_back = _train(config, trainer, train_step, publishers, collect, evaluate, started, log)
    finally:
        final_collect, final_eval = collect.stop(), evaluate.stop()
        servers.stop()
        with logs.native_stderr_silenced(quiet):
            replay.stop()
        shutil.rmtree(root_dir, ignore_errors=True)
    returns = [r for r, _ in evals]
    result = {"final_return": returns[-1] if returns else 0.0, "best_return": max(returns, default=0.0),
              "reached": bool(returns) and max(returns) >= config.target_return, "train_steps": int(train_step.numpy()),
              "env_steps": sum(r.detail.get("env_steps", 0) for r in final_collect), "seconds": time.monotonic() - started,
              "fleet_seconds": fleet_up, "versions_monotonic": not versions_back and all(
                  r.backwards == 0 for r in final_collect + final_eval),
              "failures": sum(r.failures for r in final_collect + final_eval)}
    log(f"RESULT: average return {result['final_return']:.1f} (best {result['best_return']:.1f}) after "
        f"{result['train_steps']} train steps and {result['env_steps']} env steps in {result['seconds']:.0f}s "
        f"(fleet up in {fleet_up:.0f}s); {result['failures']} failed actor runs; target "
        f"{config.target_return:.0f} {'reached' if result['reached'] else 'not reached'}")
    return result


def _train(config: Config, trainer: Any, train_step: Any, publishers: list, collect: Any, evaluate: Any,
           started: float, log: Any) -> tuple[list[tuple[float, int]], bool]:
    """The learner loop: train, push to every replica, report, until a stop condition."""
    evals: list[tuple[float, int]] = []
    last_report = 0.0
    last_push_step, seen_evals, versions_back = 0, 0, False
    while True:
        elapsed = time.monotonic() - started
        if time.monotonic() - last_report >= config.report_interval:
            last_report = time.monotonic()
            reports, evaluation = collect.reports(), evaluate.reports()
            versions_back |= any(r.backwards for r in reports + evaluation)
            for r in evaluation:
                if "AverageReturn" in r.detail and r.runs > seen_evals:
                    seen_evals = r.runs
                    evals.append((r.detail["AverageReturn"], r.versions[-1] if r.versions else 0))
            acted = [v for r in reports for v in r.versions[-1:]]
            steps = sum(r.detail.get("env_steps", 0) for r in reports)
            ret = f"{evals[-1][0]:.1f}" if evals else "-"
            log(f"[{elapsed:5.0f}s] env steps {steps:7d} | train step {int(train_step.numpy()):6d} | actors at "
                f"version {min(acted, default=0)}..{max(acted, default=0)} on {len({r.node_id for r in reports})} "
                f"nodes | eval return {ret}")
        if (evals and evals[-1][0] >= config.target_return) or elapsed > config.max_seconds \
                or int(train_step.numpy()) >= config.max_train_steps:
            return evals, versions_back
        trainer.run(iterations=config.train_iterations_per_call)
        step = int(train_step.numpy())
        if step - last_push_step >= config.push_interval:
            for publisher in publishers:
                publisher.push(trainer._agent.collect_policy.variables(), step)  # pylint: disable=protected-access
            last_push_step = step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: a simulated local one)")
    parser.add_argument("--nodes", type=int, default=3, help="nodes of the simulated cluster (default: 3)")
    parser.add_argument("--replicas", type=int, default=2, help="policy-server replicas (default: 2)")
    parser.add_argument("--actors", type=int, default=4, help="collect actors (default: 4)")
    parser.add_argument("--seconds", type=float, default=None, help="time budget")
    parser.add_argument("--verbose", action="store_true", help="let TensorFlow, gym, absl and Reverb print")
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ["TFA_POLICY_DEMO_VERBOSE"] = "1"
    else:
        logs.separate_python_stderr()
    logs.quiet_libraries(verbose=args.verbose)
    config = Config(collect_actors=args.actors)
    if args.seconds:
        config.max_seconds = args.seconds
    where = args.address or f"a simulated {args.nodes}-node Ray cluster on 127.0.0.1"
    print(f"Training DQN on CartPole-v0 on {where}: {args.replicas} policy-server replicas, {args.actors} collect "
          f"actors and an eval actor (target average return {config.target_return:.0f}) ...", flush=True)
    result = run(config, args.address, args.nodes, args.replicas, log=lambda line: print(line, flush=True))
    return 0 if result["reached"] and result["versions_monotonic"] else 1


if __name__ == "__main__":
    sys.exit(main())
