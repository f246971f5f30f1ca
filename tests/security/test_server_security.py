"""policy_server.security without a server: the tokens table, TLS files, the exposure warning."""

from __future__ import annotations

import logging

import pytest

from policy_client.transport import security as client_security
from policy_client.wire import addresses
from policy_server import security
from policy_server.security import TokenAuth

ACTOR = "actor-token-0123456789abcdef"
ACTOR2 = "second-actor-0123456789abcdef"
LEARNER = "learner-token-0123456789abcdef+/=="


def test_parse_reads_lines_commas_and_comments():
    text = f"# role token\n\nactor {ACTOR}\n  learner   {LEARNER}  \nactor {ACTOR2}, \n"
    auth = TokenAuth.parse(text, "test")
    assert [auth.role_of(t) for t in (ACTOR, ACTOR2, LEARNER, "unknown-0123456789abc")] == \
        ["actor", "actor", "learner", None]
    assert auth.counts() == {"actor": 2, "learner": 1}
    assert TokenAuth.parse(f"actor {ACTOR},learner {LEARNER}", "env").counts() == {"actor": 1, "learner": 1}


def test_a_mapping_of_roles_to_tokens():
    auth = TokenAuth({"actor": [ACTOR, ACTOR2], "learner": LEARNER})
    assert auth.role_of(LEARNER) == "learner" and auth.role_of(ACTOR2) == "actor"
    with pytest.raises(ValueError, match="unknown role 'admin'; the roles are actor, learner"):
        TokenAuth({"admin": ACTOR})
    with pytest.raises(ValueError, match="no tokens given"):
        TokenAuth({"actor": []})


@pytest.mark.parametrize("text, match", [
    ("", "tokens file: no tokens given"),
    ("# only a comment\n\n", "tokens file: no tokens given"),
    (f"admin {ACTOR}", "tokens file, line 1: expected 'ROLE TOKEN' with ROLE one of actor, learner"),
    (f"{ACTOR}", "line 1: expected 'ROLE TOKEN'"),
    (f"actor\nactor {ACTOR} {ACTOR2}", "line 1: expected 'ROLE TOKEN'"),
    (f"actor {ACTOR}\nlearner {ACTOR}", "the same token is given more than once"),
    (f"actor {ACTOR}\nactor {ACTOR}\u00e9x", "line 2: not a bearer token"),
    (f"actor {ACTOR}\nactor {ACTOR}\"", "line 2: not a bearer token"),
])
def test_bad_tokens_are_clear_errors_that_never_show_a_token(text, match):
    with pytest.raises(ValueError, match=match) as info:
        TokenAuth.parse(text, "tokens file")
    assert ACTOR not in str(info.value) and ACTOR2 not in str(info.value)


def test_short_tokens_are_warned_about(caplog):
    TokenAuth.parse("actor abc", "f")
    assert "f, line 1 is shorter than 16 characters" in caplog.text and " abc" not in caplog.text


def test_repr_and_description_never_show_a_token():
    auth = TokenAuth({"actor": [ACTOR, ACTOR2], "learner": LEARNER})
    assert repr(auth) == "TokenAuth(actor: 2, learner: 1)"
    assert security.describe(True, auth) == "TLS, tokens for actor: 2, learner: 1"
    assert security.describe(False, None) == "plaintext, no tokens"


def test_from_file_warns_when_others_may_read_it(tmp_path, caplog):
    path = tmp_path / "tokens"
    path.write_text(f"actor {ACTOR}\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert TokenAuth.from_file(path).role_of(ACTOR) == "actor"
        assert "read by other users" not in caplog.text
        path.chmod(0o644)
        TokenAuth.from_file(path)
    assert "may be read by other users (mode 644): chmod 600 it" in caplog.text


def test_from_file_and_from_env_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read the tokens file .*missing.*: No such file"):
        TokenAuth.from_file(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty'?: no tokens given"):
        TokenAuth.from_file(tmp_path / "empty")
    assert TokenAuth.from_env(environ={}) is None
    assert TokenAuth.from_env(environ={security.TOKENS_ENV: f"learner {LEARNER}"}).counts() == {"learner": 1}
    with pytest.raises(ValueError, match=r"\$TFA_POLICY_SERVER_TOKENS: no tokens given"):
        TokenAuth.from_env(environ={security.TOKENS_ENV: ""})


def test_server_credentials_check_the_files(tmp_path, certs):
    assert security.server_credentials(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match="--tls-cert: .* holds no PEM certificate"):
        security.server_credentials(str(not_pem), str(certs.server_key))
    with pytest.raises(ValueError, match="--tls-key: .* holds no PEM private key"):
        security.server_credentials(str(certs.server_cert), str(certs.server_cert))
    with pytest.raises(ValueError, match="--tls-client-ca: cannot read .*: No such file"):
        security.server_credentials(str(certs.server_cert), str(certs.server_key), str(tmp_path / "missing"))


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:0", True), ("localhost:50051", True), ("[::1]:50051", True), ("unix:/run/p.sock", True),
    ("0.0.0.0:50051", False), ("[::]:50051", False), ("10.0.0.5:50051", False), ("policy.internal:1", False),
])
def test_is_loopback(address, loopback):
    """One loopback test for both sides: the server's exposure warning and the client's local credentials."""
    assert addresses.is_loopback(address) == loopback
    assert (client_security.local_connection_type(address) is not None) == loopback


def test_the_exposure_warning_is_one_line_naming_what_is_missing_and_the_flags():
    auth = TokenAuth({"actor": ACTOR})
    assert security.exposure_warning("127.0.0.1:0", False, None) is None
    assert security.exposure_warning("unix:/run/p.sock", False, None) is None
    assert security.exposure_warning("0.0.0.0:1", True, auth) is None
    both = security.exposure_warning("0.0.0.0:1", False, None)
    assert both == ("listening on 0.0.0.0:1, beyond loopback, without TLS or tokens: anyone on the network can "
                    "read and alter its traffic, and anyone who reaches it can act and push weights (add "
                    "--tls-cert and --tls-key, and --tokens-file or $TFA_POLICY_SERVER_TOKENS)")
    plaintext = security.exposure_warning("[::]:1", False, auth)
    assert "without TLS: " in plaintext and "bearer tokens included" in plaintext
    assert plaintext.endswith("(add --tls-cert and --tls-key)")
    open_ = security.exposure_warning("10.0.0.5:1", True, None)
    assert "without tokens: anyone who reaches it can act and push weights" in open_
    assert open_.endswith("(add --tokens-file or $TFA_POLICY_SERVER_TOKENS)") and "TLS" not in open_


@pytest.mark.parametrize("method, need", [
    ("/grpc.health.v1.Health/Check", None), ("/grpc.health.v1.Health/Watch", None),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
    ("/tfa_policy_grpc.v1.PolicyService/ActionStream", "actor"),
    ("/tfa_policy_grpc.v1.PolicyService/GetStats", "actor"),
    ("/tfa_policy_grpc.v1.PolicyService/PushVariables", "learner"),
    ("/tfa_policy_grpc.v1.PolicyService/SomeNewMethod", "learner"),
    ("/inference.GRPCInferenceService/ModelInfer", "actor"),  # the Open Inference Protocol: inference
    ("/inference.GRPCInferenceService/ModelStreamInfer", "actor"),
    ("/inference.GRPCInferenceService/RepositoryModelLoad", "learner"),  # Triton's, not served: closed
    ("/other.Service/Method", "learner"),  # another service: closed until given a role
])
def test_the_role_each_method_needs(method, need):
    assert security.AuthInterceptor(TokenAuth({"actor": ACTOR}))._need(method) == need
