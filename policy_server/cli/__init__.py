"""`policy-server`: the command line.

- `command`: the flags, and serving until SIGTERM;
- `config_file`: `--config FILE.toml`, mapped onto ServerConfig and its PolicyConfigs;
- `supervisor`: `--workers N`, N server processes sharing one port.
"""

from policy_server.cli.command import main

__all__ = ["main"]
