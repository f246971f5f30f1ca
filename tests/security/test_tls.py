"""TLS and mTLS end to end: grpcs:// URIs in PolicyClient, VariablePublisher and load(); what is refused.

Certificates are made at run time (tests/security/certs.py). Refused
connections are checked on raw stubs without wait-for-ready, so they fail at
once with UNAVAILABLE (the handshake fails) instead of waiting for a deadline.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import policy_client
from policy_client import PolicyClient, VariablePublisher
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from policy_server.security import server_credentials
from tests.security.certs import SERVER_NAME
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(120)


def state() -> dict:
    return {"count": np.array(0, np.int64)}


@pytest.fixture
def tls_server(servers, certs):
    return servers.serve({"echo": EchoBackend()}, credentials=server_credentials(str(certs.server_cert),
                                                                                  str(certs.server_key)))


@pytest.fixture
def mtls_server(servers, certs, tokens):
    credentials = server_credentials(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    return servers.serve({"echo": EchoBackend()}, credentials=credentials, auth=tokens.auth())


def refused_connection(target: str, credentials: grpc.ChannelCredentials | None, options=()) -> None:
    """A call on a raw channel fails with UNAVAILABLE (the connection is refused)."""
    channel = grpc.insecure_channel(target, options) if credentials is None \
        else grpc.secure_channel(target, credentials, options)
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            service_grpc.PolicyServiceStub(channel).ListPolicies(service_pb.ListPoliciesRequest(), timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_a_tls_call_works(servers, tls_server, certs, host, transport):
    client = servers.client(f"grpcs://{host}:{tls_server.port}/echo?ca={certs.ca}", transport=transport)
    assert client.policy == "echo" and client.address == f"{host}:{tls_server.port}"
    step = client.action(echo_time_step([1, 2, 3]), state()).policy_step
    np.testing.assert_array_equal(step.action, [2, 4, 6])


def test_tls_credentials_with_the_server_name(servers, tls_server, certs):
    credentials = policy_client.tls_credentials(ca_file=str(certs.ca))
    client = servers.client(f"127.0.0.1:{tls_server.port}", "echo", credentials=credentials,
                            options=[("grpc.ssl_target_name_override", SERVER_NAME)])
    assert [p.name for p in client.list_policies()] == ["echo"]
    uri = f"grpcs://127.0.0.1:{tls_server.port}/echo?ca={certs.ca}&server_name={SERVER_NAME}"
    assert [p.name for p in servers.client(uri).list_policies()] == ["echo"]


def test_a_plaintext_client_is_refused(tls_server):
    refused_connection(f"127.0.0.1:{tls_server.port}", None)


def test_a_server_of_another_ca_or_name_is_refused(tls_server, certs):
    target = f"127.0.0.1:{tls_server.port}"
    refused_connection(target, grpc.ssl_channel_credentials(certs.other_ca.read_bytes()))
    refused_connection(target, grpc.ssl_channel_credentials(certs.ca.read_bytes()),
                       [("grpc.ssl_target_name_override", "wrong.test")])


def test_mtls_with_a_client_certificate_and_a_token_works(servers, mtls_server, certs, tokens):
    query = f"ca={certs.ca}&cert={certs.client_cert}&key={certs.client_key}"
    actor = servers.client(f"grpcs://localhost:{mtls_server.port}/echo?{query}&token_file={tokens.actor_file}")
    assert actor.action(echo_time_step([1, 2, 3]), state()).version == 0
    uri = f"grpcs://localhost:{mtls_server.port}/echo?{query}"
    with VariablePublisher(uri, token_file=str(tokens.learner_file), timeout=WAIT) as publisher:
        assert publisher.policy == "echo"
        assert publisher.push([np.float32(1)], 4) == 4
    assert actor.action(echo_time_step([1, 2, 3]), state()).version == 4


def test_mtls_without_a_client_certificate_is_refused(mtls_server, certs):
    target = f"localhost:{mtls_server.port}"
    refused_connection(target, grpc.ssl_channel_credentials(certs.ca.read_bytes()))
    refused_connection(target, None)
    stranger = grpc.ssl_channel_credentials(certs.ca.read_bytes(), certs.stranger_key.read_bytes(),
                                            certs.stranger_cert.read_bytes())
    refused_connection(target, stranger)  # a certificate of another CA


def test_mtls_without_a_client_certificate_fails_the_client_within_its_deadline(mtls_server, certs):
    with PolicyClient(f"grpcs://localhost:{mtls_server.port}/echo?ca={certs.ca}", timeout=1.0) as client:
        with pytest.raises((policy_client.UnavailableError, policy_client.DeadlineExceededError)):
            client.list_policies()


def test_load_takes_tls_options_in_the_uri(tls_server, mtls_server, certs, tokens):
    with policy_client.load(f"grpcs://127.0.0.1:{tls_server.port}/echo?ca={certs.ca}", timeout=WAIT) as remote:
        np.testing.assert_array_equal(remote.action(echo_time_step([1, 2, 3]), state()).action, [2, 4, 6])
    uri = (f"grpcs://localhost:{mtls_server.port}/echo?ca={certs.ca}&cert={certs.client_cert}"
           f"&key={certs.client_key}&token_file={tokens.actor_file}")
    with policy_client.load(uri, timeout=WAIT) as remote:
        assert remote.client.policy == "echo"
        np.testing.assert_array_equal(remote.action(echo_time_step([1, 2, 3]), state()).action, [2, 4, 6])
