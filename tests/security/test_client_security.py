"""policy_client.transport.security without a server: URIs, local addresses, where tokens come from, what is refused."""

from __future__ import annotations

import grpc
import pytest

from policy_client import PolicyClient
from policy_client.transport import security

TOKEN = "s3cret-Token_0123456789~+/="
UDS, TCP = grpc.LocalConnectionType.UDS, grpc.LocalConnectionType.LOCAL_TCP


@pytest.mark.parametrize("uri, expected", [
    ("grpc://127.0.0.1:50051/cartpole", ("grpc", "127.0.0.1:50051", "cartpole", {})),
    ("grpcs://policy.internal:443", ("grpcs", "policy.internal:443", "", {})),
    ("grpcs://[::1]:5000/a?ca=/c.pem&cert=/x.pem&key=/x.key&server_name=p.test&token_file=/t",
     ("grpcs", "[::1]:5000", "a", {"ca": "/c.pem", "cert": "/x.pem", "key": "/x.key", "server_name": "p.test",
                                   "token_file": "/t"})),
    ("grpc://localhost:1/p?token_file=/run/token", ("grpc", "localhost:1", "p", {"token_file": "/run/token"})),
], ids=["plain", "no-policy", "every-option", "plain-token-file"])
def test_parse_uri(uri, expected):
    assert security.parse_uri(uri) == expected


@pytest.mark.parametrize("uri, match", [
    ("grpc:///cartpole", "expected grpc://host:port/policy_name"),
    ("grpcs://h:1/p?token=" + TOKEN, "a token never goes in a URI"),
    ("grpcs://h:1/p?access_token=" + TOKEN, "a token never goes in a URI"),
    ("grpcs://h:1/p?cafile=/x", "unknown option 'cafile'"),
    ("grpcs://h:1/p?ca=/x&ca=/y", "option 'ca' is given twice"),
    ("grpcs://h:1/p?ca=", "option 'ca' is empty"),
    ("grpc://h:1/p?ca=/x", "TLS options: use grpcs://"),
    ("grpc://h:1/p?server_name=x", "TLS options: use grpcs://"),
])
def test_bad_uris_are_clear_errors_that_never_repeat_the_query(uri, match):
    with pytest.raises(ValueError, match=match) as info:
        security.parse_uri(uri)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("target, kind", [
    ("127.0.0.1:50051", TCP), ("127.1.2.3:1", TCP), ("localhost:50051", TCP), ("LOCALHOST:1", TCP),
    ("[::1]:50051", TCP), ("dns:///localhost:5000", TCP), ("dns://8.8.8.8/localhost:5000", TCP),
    ("ipv4:127.0.0.1:1,127.0.0.1:2", TCP), ("ipv6:[::1]:1", TCP),
    ("unix:/run/policy.sock", UDS), ("unix:///run/policy.sock", UDS), ("unix-abstract:policy", UDS),
    ("10.0.0.5:50051", None), ("policy.internal:443", None), ("[2001:db8::1]:1", None), ("0.0.0.0:1", None),
    ("dns:///policy.internal:443", None), ("ipv4:127.0.0.1:1,10.0.0.5:2", None),
])
def test_local_connection_type(target, kind):
    assert security.local_connection_type(target) == kind


def test_where_the_token_comes_from(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    other = tmp_path / "other"
    other.write_text("other-token-0123456789")
    env = {security.TOKEN_ENV: "env-token-0123456789", security.TOKEN_FILE_ENV: str(other)}
    assert security.read_token(TOKEN, str(other), env) == (TOKEN, "token=")
    assert security.read_token(None, str(path), env) == (TOKEN, f"token file {str(path)!r}")
    assert security.read_token(None, None, env) == ("env-token-0123456789", "$TFA_POLICY_TOKEN")
    assert security.read_token(None, None, {security.TOKEN_FILE_ENV: str(other)})[0] == "other-token-0123456789"
    assert security.read_token("", str(path), env) is None
    assert security.read_token(None, None, {}) is None


@pytest.mark.parametrize("text, match", [
    ("\n", "is empty"),
    (f"{TOKEN} {TOKEN}", "not a bearer token"),
    (f"{TOKEN}\nsecond-line", "not a bearer token"),
    (f"{TOKEN}\u00e9", "not a bearer token"),
])
def test_bad_token_files_are_clear_errors_that_never_show_the_token(tmp_path, text, match):
    path = tmp_path / "token"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        security.read_token(None, str(path), {})
    assert TOKEN not in str(info.value)


def test_a_missing_token_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        security.read_token(None, str(tmp_path / "missing"), {})


@pytest.mark.parametrize("address", ["10.0.0.5:50051", "grpc://policy.internal:50051/cartpole",
                                     "dns:///policy.internal:50051"])
def test_a_token_over_plaintext_to_another_host_is_refused(address):
    with pytest.raises(ValueError, match="only sent over TLS or to a local address") as info:
        PolicyClient(address, token=TOKEN)
    assert TOKEN not in str(info.value)


def test_a_token_from_the_environment_over_plaintext_says_where_it_came_from(monkeypatch):
    monkeypatch.setenv(security.TOKEN_ENV, TOKEN)
    with pytest.raises(ValueError, match=r"from \$TFA_POLICY_TOKEN\).*token=''") as info:
        PolicyClient("10.0.0.5:50051")
    assert TOKEN not in str(info.value)
    PolicyClient("10.0.0.5:50051", token="").close()  # opts out
    PolicyClient("127.0.0.1:50051").close()  # local: the token goes over local credentials


@pytest.mark.parametrize("kwargs, match", [
    ({"policy": "other"}, "names policy 'p' and policy= 'other'"),
    ({"credentials": grpc.ssl_channel_credentials()}, "in the URI or credentials=, not both"),
    ({"token_file": "/x"}, "in the URI or token=/token_file=, not both"),
])
def test_contradicting_options_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        security.endpoint("grpcs://h:1/p?ca=/ca.pem&token_file=/t", **kwargs, environ={})


def test_a_client_certificate_needs_its_key(tmp_path):
    with pytest.raises(ValueError, match="needs its key"):
        security.endpoint(f"grpcs://h:1/p?cert={tmp_path}/c.pem", environ={})


def test_endpoint_of_a_uri_and_of_a_target(tmp_path):
    where = security.endpoint("grpcs://h:1/p?server_name=policy.internal", environ={})
    assert (where.target, where.policy) == ("h:1", "p")
    assert isinstance(where.credentials, grpc.ChannelCredentials)
    assert where.options == (("grpc.ssl_target_name_override", "policy.internal"),)
    plain = security.endpoint("unix:/run/p.sock", "q", environ={})
    assert plain == security.Endpoint("unix:/run/p.sock", "q", None, ())
    assert security.endpoint("unix:/run/p.sock", token=TOKEN, environ={}).credentials is not None
