"""Server reflection can be switched off: ServerConfig(reflection=False), --no-reflection, `[server] reflection`.

Off, a reflection request gets UNIMPLEMENTED while health checking and the
policy service still answer; on (the default), it lists the services. The
setting reaches every worker of `--workers N`.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from policy_server.cli import command as cli
from policy_server.cli import config_file
from policy_server.cli import supervisor as workers
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(120)

ECHO = ["--factory", "echo=tests.support.fakes:EchoBackend"]


def list_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = stub.ServerReflectionInfo(iter([request]), timeout=WAIT)
    return {s.name for s in response.list_services_response.service}


def serves(servers, server, token: str | None) -> None:
    """Health says SERVING and the policy service answers an action."""
    health = health_pb2_grpc.HealthStub(servers.channel(server.address)).Check(health_pb2.HealthCheckRequest(),
                                                                                timeout=WAIT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    client = servers.client(server.address, "echo", token=token, transport="unary")
    step = client.action(echo_time_step([1, 2, 3]), {"count": np.array(0, np.int64)}).policy_step
    np.testing.assert_array_equal(step.action, np.array([2, 4, 6], np.float32))


@pytest.mark.parametrize("with_tokens", [False, True], ids=["open", "tokens"])
def test_reflection_off_is_unimplemented_while_health_and_policies_answer(servers, tokens, with_tokens):
    server = servers.serve({"echo": EchoBackend()}, reflection=False, auth=tokens.auth() if with_tokens else None)
    with pytest.raises(grpc.RpcError) as info:
        list_services(servers.channel(server.address))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    serves(servers, server, tokens.actor if with_tokens else None)


@pytest.mark.parametrize("with_tokens", [False, True], ids=["open", "tokens"])
def test_reflection_on_lists_the_services(servers, tokens, with_tokens):
    server = servers.serve({"echo": EchoBackend()}, auth=tokens.auth() if with_tokens else None)
    assert server.server.config.reflection  # the default
    assert {"tfa_policy_grpc.v1.PolicyService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= list_services(servers.channel(server.address))
    serves(servers, server, tokens.actor if with_tokens else None)


def test_the_flag_and_the_config_file_key(tmp_path):
    def reflection(*argv: str) -> bool:
        return cli.server_config(cli.parse_args([*ECHO, *argv]), secured=(None, None)).reflection

    assert reflection() is True
    assert reflection("--no-reflection") is False
    path = tmp_path / "serving.toml"
    path.write_text("[server]\nreflection = false\n")
    assert config_file.load(path).settings["reflection"] is False
    assert reflection("--config", str(path)) is False
    assert reflection("--config", str(path), "--reflection") is True  # flags win
    path.write_text('[server]\nreflection = "no"\n')
    with pytest.raises(ValueError, match=r"\[server\] reflection: expected true or false"):
        config_file.load(path)


def test_every_worker_gets_the_setting(tmp_path):
    argv = [*ECHO, "--workers", "2", "--no-reflection"]
    supervisor = workers.Supervisor(cli.parse_args(argv), argv)
    try:
        for index in range(2):
            command = supervisor.command(index)
            assert command[1:3] == ["-m", "policy_server.cli"]
            assert cli.parse_args(command[3:]).reflection is False
    finally:
        supervisor._reserved.close()  # pylint: disable=protected-access


def test_help_says_reflection_is_open_unless_switched_off(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--reflection, --no-reflection" in text
    assert "so does reflection unless --no-reflection" in text
