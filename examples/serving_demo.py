"""Serving demo: one policy server, several CartPole actor processes, batched inference.

Starts `policy-server` with its built-in CartPole policy on a free loopback
port, runs actor processes that step CartPole through RemotePolicy and
PyDriver, prints steps/s, the server's mean batch size and episode returns,
then shuts everything down.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

from policy_client import PolicyClient

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def actor_context() -> Any:
    """Where actor processes come from: a forkserver that has imported gRPC, numpy and TF-Agents.

    Its children share one memory layout. Spawned processes each get their own
    (address-space randomization), and with more processes than cores every
    context switch then costs more: a gRPC client spent 1.6x the CPU per call
    here. The forkserver itself runs no TensorFlow op and opens no channel, so
    forking from it is safe.
    """
    ctx = multiprocessing.get_context("forkserver")
    # examples.quiet_preload first: it silences what TensorFlow and gym print when they load.
    ctx.set_forkserver_preload(["examples.quiet_preload", "grpc", "numpy", "tensorflow", "tf_agents"])
    return ctx


def start_server(extra_args: list[str] | None = None, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Starts `python -m policy_server.cli` on a free port; returns (process, address)."""
    cmd = [sys.executable, "-m", "policy_server.cli", "--port", "0", "--stats-interval", "0",
           "--log-level", "WARNING", *(extra_args or [])]
    # The server imports the demo policies (--demo) from this checkout's examples/.
    path = os.pathsep.join(p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path})
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"policy-server serving .* on (\S+)$", line.strip())
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError(f"policy server did not start (exit code {proc.poll()})")


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM (graceful: accepted requests are answered), then wait."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _actor(address: str, seconds: float, seed: int, results: Any) -> None:
    """One actor process: PyDriver over CartPole with a RemotePolicy."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_agents.drivers import py_driver  # pylint: disable=import-outside-toplevel
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel

    from policy_client import RemotePolicy  # pylint: disable=import-outside-toplevel

    env = suite_gym.load("CartPole-v0")
    env.seed(seed)
    returns: list[float] = []
    episode = [0.0]

    def observe(traj: Any) -> None:
        episode[0] += float(traj.reward)
        if traj.is_boundary():
            returns.append(episode[0])
            episode[0] = 0.0

    with RemotePolicy(address, "cartpole") as policy:
        driver = py_driver.PyDriver(env, policy, observers=[observe], max_steps=100)
        time_step, steps, start = env.reset(), 0, time.monotonic()
        while time.monotonic() - start < seconds:
            time_step, _ = driver.run(time_step)
            steps += 100
        results.put((steps, time.monotonic() - start, returns))


def run(actors: int = 4, seconds: float = 10.0) -> dict[str, Any]:
    """Runs the demo; returns the numbers it printed."""
    server, address = start_server(["--demo"])
    try:
        print(f"policy server on {address}; {actors} actor processes for {seconds:.0f}s ...", flush=True)
        ctx = actor_context()
        results = ctx.Queue()
        procs = [ctx.Process(target=_actor, args=(address, seconds, i, results)) for i in range(actors)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=seconds + 180) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        with PolicyClient(address) as client:
            stats = client.stats()[0]
    finally:
        code = stop_server(server)
    steps = sum(o[0] for o in outcomes)
    rate = sum(o[0] / o[1] for o in outcomes)
    returns = [r for o in outcomes for r in o[2]]
    summary = {"actors": actors, "steps": steps, "steps_per_s": rate, "mean_batch_size": stats["mean_batch_size"],
               "episodes": len(returns), "mean_return": sum(returns) / max(len(returns), 1),
               "server_exit_code": code}
    print(f"steps/s {rate:.0f} over {actors} actors | mean batch size {stats['mean_batch_size']:.2f} | "
          f"{len(returns)} episodes, mean return {summary['mean_return']:.1f} "
          f"(untrained policy) | server p50 wait {stats['queue_wait_ms_p50']:.2f} ms, "
          f"p50 inference {stats['inference_ms_p50']:.2f} ms | server exit code {code}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    summary = run(args.actors, args.seconds)
    return 0 if summary["server_exit_code"] == 0 and summary["steps"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
