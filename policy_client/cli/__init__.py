"""`policy-client`: the command line (no TensorFlow needed).

- `command`: the subcommands (list, specs, act, stats, push, pull);
- `inputs`: the values it sends: random time steps, JSON or npz files;
- `output`: how it prints specs, values and tables.
"""

from policy_client.cli.command import main

__all__ = ["main"]
