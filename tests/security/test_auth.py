"""Bearer tokens with roles, end to end on real servers (plaintext loopback, unix socket, TLS).

Missing or unknown tokens get UNAUTHENTICATED, a role too low PERMISSION_DENIED;
health and reflection stay open; a stream is authorized once; tokens never
show in messages or logs.
"""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from policy_client import PolicyClient, RemoteError, VariablePublisher
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server import security
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(120)

UNAUTHENTICATED, PERMISSION_DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED


def state(count: int = 0) -> dict:
    return {"count": np.array(count, np.int64)}


def act(client: PolicyClient) -> int:
    """One action; the version that answered."""
    result = client.action(echo_time_step([1, 2, 3]), state())
    np.testing.assert_array_equal(result.policy_step.action, 2 * np.array([1, 2, 3], np.float32) + result.version)
    return result.version


@pytest.fixture
def server(servers, tokens):
    return servers.serve({"echo": EchoBackend()}, auth=tokens.auth())


def refused(code: grpc.StatusCode, call, *args) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        call(*args)
    assert info.value.code == code, info.value
    return info.value


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_actor_token_acts_lists_and_reads_specs_state_and_stats(servers, server, tokens, transport):
    client = servers.client(server.address, "echo", token_file=str(tokens.actor_file), transport=transport)
    assert [p.name for p in client.list_policies()] == ["echo"]
    assert client.get_specs()[0].time_step_spec.observation.shape == (3,)
    assert client.get_initial_state() == state()
    assert act(client) == 0
    assert client.stats()[0]["requests"] >= 1


def test_actor_may_not_push_or_read_variables(server, tokens):
    with VariablePublisher(server.address, "echo", token=tokens.actor, timeout=WAIT) as publisher:
        error = refused(PERMISSION_DENIED, publisher.push, [np.float32(1)], 5)
        assert "role 'actor' may not call PushVariables: it needs role 'learner'" in str(error)
        refused(PERMISSION_DENIED, publisher.variables)
    assert server.server.registry.get("echo").backend.version == 0


def test_learner_pushes_reads_variables_and_acts(servers, server, tokens):
    with VariablePublisher(server.address, "echo", token_file=str(tokens.learner_file), timeout=WAIT) as publisher:
        assert publisher.push([np.float32(0.5)], 7) == 7
        assert publisher.variables(include_values=True)[0]["value"] == np.float32(0.5)
    learner = servers.client(server.address, "echo", token=tokens.learner)
    assert learner.action(echo_time_step([1, 2, 3]), state()).version == 7


@pytest.mark.parametrize("transport", ["unary", "stream"])
@pytest.mark.parametrize("token, reason", [(None, "missing_token"), ("not-a-known-token-0123456789", "invalid_token")])
def test_missing_or_unknown_token_is_unauthenticated(servers, server, transport, token, reason):
    client = servers.client(server.address, "echo", token=token, transport=transport, use_plans=False)
    for call, args in ((client.list_policies, ()), (client.get_specs, ()), (act, (client,))):
        assert refused(UNAUTHENTICATED, call, *args).reason == reason
    with VariablePublisher(server.address, "echo", token=token, timeout=WAIT) as publisher:
        refused(UNAUTHENTICATED, publisher.push, [np.float32(1)], 5)


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "bearer  "])
def test_an_authorization_that_is_not_bearer_is_unauthenticated(servers, server, value):
    stub = servers.stub(server.address)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListPolicies(service_pb.ListPoliciesRequest(), metadata=(("authorization", value),), timeout=WAIT)
    assert info.value.code() == UNAUTHENTICATED


def test_the_bearer_scheme_is_case_insensitive(servers, server, tokens):
    stub = servers.stub(server.address)
    response = stub.ListPolicies(service_pb.ListPoliciesRequest(), timeout=WAIT,
                                 metadata=(("authorization", f"bearer {tokens.actor}"),))
    assert [p.name for p in response.policies] == ["echo"]


def test_health_and_reflection_stay_open(servers, server):
    channel = servers.channel(server.address)  # plaintext, no token
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=WAIT))
    assert "tfa_policy_grpc.v1.PolicyService" in {s.name for s in responses[0].list_services_response.service}


def test_a_stream_is_authorized_once(servers, server, tokens, monkeypatch):
    checks = []
    role_of = security.TokenAuth.role_of
    monkeypatch.setattr(security.TokenAuth, "role_of", lambda self, token: checks.append(1) or role_of(self, token))
    client = servers.client(server.address, "echo", token=tokens.actor, use_plans=False)
    for _ in range(5):
        act(client)
    assert len(checks) == 1


def test_tokens_never_show_in_messages_or_logs(servers, server, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = tokens.actor[:-4] + "AAAA"
    errors = []
    for token in (wrong, tokens.actor):
        client = servers.client(server.address, "echo", token=token, transport="unary", use_plans=False)
        with VariablePublisher(server.address, "echo", token=token, timeout=WAIT) as publisher:
            for call, args in ((publisher.push, ([np.float32(1)], 5)), (act, (client,))):
                try:
                    call(*args)
                except RemoteError as e:
                    errors.append(f"{e!s} {e!r} {e.details} {e.reason}")
    assert len(errors) == 3  # the wrong token twice, the actor's push once
    text = " ".join(errors) + caplog.text + repr(server.server.config)
    assert "refused" in caplog.text
    for secret in (*tokens.all, wrong):
        assert secret not in text


def test_tokens_over_a_unix_socket(servers, tokens, tmp_path):
    server = servers.serve({"echo": EchoBackend()}, auth=tokens.auth(), address=f"unix:{tmp_path}/policy.sock")
    assert act(servers.client(server.address, "echo", token=tokens.actor)) == 0
    refused(UNAUTHENTICATED, act, servers.client(server.address, "echo"))


def test_the_environment_supplies_the_token(servers, server, tokens, monkeypatch):
    monkeypatch.setenv("TFA_POLICY_TOKEN_FILE", str(tokens.learner_file))
    with VariablePublisher(server.address, "echo", timeout=WAIT) as publisher:
        assert publisher.push([np.float32(1)], 3) == 3
    monkeypatch.setenv("TFA_POLICY_TOKEN", tokens.actor)  # before the file
    refused(PERMISSION_DENIED, VariablePublisher(server.address, "echo", timeout=WAIT).variables)
    refused(UNAUTHENTICATED, act, servers.client(server.address, "echo", token=""))  # "" sends none


def test_a_server_without_tokens_ignores_them(servers, tokens):
    server = servers.serve({"echo": EchoBackend()})
    assert act(servers.client(server.address, "echo", token=tokens.actor)) == 0
    assert act(servers.client(server.address, "echo")) == 0


def test_every_policy_service_method_has_a_role():
    methods = {m.name for m in service_pb.DESCRIPTOR.services_by_name["PolicyService"].methods}
    assert set(security.METHOD_ROLES) == methods
    assert {m for m, role in security.METHOD_ROLES.items() if role == security.LEARNER} == \
        {"PushVariables", "GetVariables", "LoadCheckpoint"}


def test_the_server_says_how_it_is_secured(servers, tokens, caplog):
    caplog.set_level(logging.INFO, logger="policy_server.server")
    server = servers.serve({"echo": EchoBackend()}, auth=tokens.auth())
    assert f"listening on {server.address} (plaintext, tokens for actor: 1, learner: 1)" in caplog.text
    assert "WARNING" not in caplog.text  # loopback: nothing to warn about
