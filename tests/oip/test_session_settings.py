"""The session knobs: --max-sessions / --session-idle-timeout, `[server]` keys, and what the server builds."""

from __future__ import annotations

import pytest

from policy_server.cli import command as cli
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend


def test_flags_and_config_file_set_the_session_bounds(tmp_path):
    defaults = cli.server_config(cli.parse_args(["--demo"]))
    assert (defaults.max_sessions, defaults.session_idle_timeout) == (1024, 60.0)
    flags = cli.server_config(cli.parse_args(["--demo", "--max-sessions", "8", "--session-idle-timeout", "2.5"]))
    assert (flags.max_sessions, flags.session_idle_timeout) == (8, 2.5)
    path = tmp_path / "serving.toml"
    path.write_text("[server]\nmax_sessions = 16\nsession_idle_timeout = 30.0\n")
    from_file = cli.server_config(cli.parse_args(["--demo", "--config", str(path)]))
    assert (from_file.max_sessions, from_file.session_idle_timeout) == (16, 30.0)
    with pytest.raises(SystemExit, match="max_sessions must be >= 1"):
        cli.server_config(cli.parse_args(["--demo", "--max-sessions", "0"]))


def test_every_hosted_policy_gets_a_session_table_with_the_bounds():
    with BackgroundServer({"echo": EchoBackend()}, max_sessions=3, session_idle_timeout=7.0) as server:
        table = server.server.registry.get("echo").sessions
        assert (table.max_sessions, table.idle_timeout, table.open) == (3, 7.0, 0)
