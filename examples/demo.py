"""`make demo`: DQN on CartPole trained through the policy server (actor-learner).

Usage:
  python -m examples.demo              # the actor-learner run (default)
  python -m examples.demo --serving    # serving only: actors + batching, no learner
"""

from __future__ import annotations

import argparse
import os
import sys

from policy_server.telemetry import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving", action="store_true", help="run the serving-only demo instead")
    parser.add_argument("--actors", type=int, default=None, help="collect actor processes")
    parser.add_argument("--seconds", type=float, default=None, help="time budget")
    parser.add_argument("--root-dir", default=None, metavar="DIR",
                        help="keep the learner's files in DIR (default: a temporary directory, removed at the end)")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow, gym, absl and Reverb print what they print (quiet by default)")
    args = parser.parse_args(argv)
    # Before TensorFlow, gym and Reverb load, in this process and (through the
    # environment and examples.quiet_preload) in the server and the actors.
    if args.verbose:
        os.environ["TFA_POLICY_DEMO_VERBOSE"] = "1"
    else:
        logs.separate_python_stderr()  # so that Reverb's C++ lines can be silenced alone (actor_learner)
    logs.quiet_libraries(verbose=args.verbose)
    if args.serving:
        from examples import serving_demo  # pylint: disable=import-outside-toplevel

        summary = serving_demo.run(args.actors or 4, args.seconds or 10.0)
        return 0 if summary["server_exit_code"] == 0 and summary["steps"] > 0 else 1
    from examples import actor_learner  # pylint: disable=import-outside-toplevel

    config = actor_learner.Config()
    if args.actors:
        config.collect_actors = args.actors
    if args.seconds:
        config.max_seconds = args.seconds
    print(f"Training DQN on CartPole-v0 through the policy server (target average return "
          f"{config.target_return:.0f}, at most {config.max_seconds:.0f}s) ...", flush=True)
    result = actor_learner.run(config, root_dir=args.root_dir, log=lambda line: print(line, flush=True))
    return 0 if result["server_exit_code"] == 0 and result["train_steps"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
