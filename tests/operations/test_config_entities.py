"""Configuration per entity: ServerConfig holds server-wide settings and one PolicyConfig per policy, and
the TOML file maps onto them table by table."""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest

from policy_client import PolicyClient
from policy_server.cli import command as cli
from policy_server.cli import config_file
from policy_server.config import BatchingConfig, PolicyConfig, ServerConfig
from policy_server.server import BackgroundServer, PolicyServer
from tests.support.fakes import EchoBackend, echo_time_step

# ServerConfig field -> the config file's key that sets it ("[table] key").
SERVER_FIELDS = {
    "address": "[server] address (or host and port)", "batching": "[batching]",
    "max_message_bytes": "[server] max_message_mb", "stats_interval": "[server] stats_interval",
    "credentials": "[security] tls_cert, tls_key, tls_client_ca", "auth": "[security] tokens_file",
    "follow_interval": "[server] follow_interval", "metrics_port": "[server] metrics_port",
    "metrics_host": "[server] metrics_host", "shared_memory": "[server] shared_memory",
    "max_sessions": "[server] max_sessions", "session_idle_timeout": "[server] session_idle_timeout",
    "reflection": "[server] reflection", "stream_acks": "[server] stream_acks", "policies": "[policies.NAME]",
}
# Fields no file sets, and why.
NOT_IN_FILE = {
    "load_report_interval": "an embedding's knob (how often a slow load logs); the CLI keeps its default",
    "reuse_port": "set by the --workers supervisor for its workers, never by an operator",
}


def test_every_server_setting_has_its_key_in_the_file():
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    assert fields == set(SERVER_FIELDS) | set(NOT_IN_FILE)
    keys = set(config_file.SERVER_KEYS) | set(config_file.SECURITY_KEYS)
    for field, where in SERVER_FIELDS.items():
        table, _, key = where.partition(" ")
        if table == "[server]" or table == "[security]":
            assert key.split(" ")[0].rstrip(",") in keys, (field, where)


def test_every_policy_setting_has_its_key_in_a_policy_table():
    fields = {f.name for f in dataclasses.fields(PolicyConfig)} - {"name", "source"}
    assert fields <= set(config_file.POLICY_KEYS) | {"batching"}
    assert {"saved_model", "factory"} <= set(config_file.POLICY_KEYS)  # the source


def test_a_policy_table_maps_onto_its_policy_config(tmp_path):
    path = tmp_path / "serving.toml"
    path.write_text(textwrap.dedent("""
        [server]
        max_sessions = 9
        reverb_table = "shared"

        [batching]
        max_batch_size = 32

        [policies.a]
        factory = "tests.support.fakes:EchoBackend"
        batching = { max_batch_size = 4 }
        follow_reverb = "127.0.0.1:1"
        reverb_table = "mine"
        max_sessions = 3
        session_idle_timeout = 2.5

        [policies.b]
        saved_model = "b_policy"
        follow_reverb = "127.0.0.1:2"
    """))
    config = cli.server_config(cli.parse_args(["--config", str(path)]), secured=(None, None))
    assert [p.name for p in config.policies] == ["a", "b"]
    a, b = config.policy("a"), config.policy("b")
    assert (a.batching.max_batch_size, a.max_sessions, a.session_idle_timeout) == (4, 3, 2.5)
    assert (a.follow_reverb, a.reverb_table) == ("127.0.0.1:1", "mine")
    assert (b.batching.max_batch_size, b.max_sessions) == (32, 9)  # the server's defaults
    assert (b.reverb_table, b.source()) == ("shared", str(tmp_path / "b_policy"))


def test_policy_settings_reach_the_hosted_policy():
    policies = [PolicyConfig("small", EchoBackend(), batching=BatchingConfig(max_batch_size=2), max_sessions=1),
                PolicyConfig("plain", EchoBackend())]
    with BackgroundServer(policies, max_sessions=5, batching=BatchingConfig(max_batch_size=8)) as server:
        small, plain = (server.server.registry.get(n) for n in ("small", "plain"))
        assert (small.scheduler.config.max_batch_size, small.sessions.max_sessions) == (2, 1)
        assert (plain.scheduler.config.max_batch_size, plain.sessions.max_sessions) == (8, 5)
        with PolicyClient(server.address, "", timeout=30) as client:  # the first PolicyConfig is the default
            assert client.get_specs()[0] is not None
            assert client.list_policies()[0].name == "small"
            step = client.action(echo_time_step(np.ones(3, np.float32)), {"count": np.int64(0)}).policy_step
            np.testing.assert_array_equal(step.action, 2 * np.ones(3, np.float32))


def test_a_source_may_come_with_the_name_or_with_the_policy_config():
    config = ServerConfig(policies=[PolicyConfig("a", max_sessions=2), PolicyConfig("b", EchoBackend())])
    with BackgroundServer({"a": EchoBackend()}, config) as server:
        assert [h.name for h in server.server.registry] == ["a", "b"]
        assert server.server.registry.get("a").sessions.max_sessions == 2


@pytest.mark.parametrize("policies, config, match", [
    ({"a": EchoBackend()}, ServerConfig(policies=[PolicyConfig("a", EchoBackend())]), "policy 'a' has two sources"),
    ({"a": EchoBackend()}, ServerConfig(policies=[PolicyConfig("b", max_sessions=2)]),
     r"settings for policies \['b'\], which have no source"),
    (None, ServerConfig(), "a server needs at least one policy"),
], ids=["two-sources", "no-source", "nothing"])
def test_policies_that_do_not_add_up_are_refused(policies, config, match):
    with pytest.raises(ValueError, match=match):
        PolicyServer(policies, config)


@pytest.mark.parametrize("make, match", [
    (lambda: ServerConfig(policies=[PolicyConfig("a"), PolicyConfig("a")]), r"policies \['a'\] have more than one"),
    (lambda: PolicyConfig("a", max_sessions=0), "policy 'a': max_sessions must be >= 1"),
    (lambda: PolicyConfig("a", session_idle_timeout=0), "policy 'a': session_idle_timeout must be > 0"),
], ids=["twice", "max-sessions", "idle-timeout"])
def test_bad_policy_settings_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_follow_flag_for_a_policy_not_served_is_refused():
    with pytest.raises(SystemExit, match="--follow-checkpoints nope=...: no policy named 'nope'"):
        cli.policy_configs(cli.parse_args(["--factory", "echo=tests.support.fakes:EchoBackend",
                                           "--follow-checkpoints", "nope=/x"]))
