"""Server-side security: TLS credentials, bearer tokens with roles, and the interceptor that checks them.

Roles (each may do what the roles before it may):

- `actor`: ListPolicies, GetSpecs, GetInitialState, Action, ActionStream, GetStats, and every
  method of the Open Inference Protocol's `inference.GRPCInferenceService`;
- `learner`: also PushVariables, GetVariables and LoadCheckpoint (what changes or reads weights).

A call to the PolicyService needs metadata `authorization: Bearer <token>`:
without one (or with a token the server does not know) it ends with
UNAUTHENTICATED, with a token of a role too low for the method with
PERMISSION_DENIED. Health checking (grpc.health.v1) and reflection (unless
the server has it off: ServerConfig.reflection, --no-reflection) stay open;
a method of any other service needs the highest role, so a new service is
closed until it is given one. The check runs once per call (a stream is one
call): a dictionary lookup, one SHA-256 and one `hmac.compare_digest` per
known token. Tokens never appear in logs, messages or reprs.

A role holds for every policy the server hosts. A token carries no identity
(the tokens file is `ROLE TOKEN` lines), and the policy a call names travels
in its request message, which an interceptor never sees; learners that must
not touch each other's policies get separate servers (or ports) and tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import ssl
import stat
import time
from typing import Any, Iterable, Mapping

import grpc

from policy_client.wire import SERVICE_NAME, errors, status
from policy_client.wire.addresses import is_loopback

logger = logging.getLogger(__name__)

TOKENS_ENV = "TFA_POLICY_SERVER_TOKENS"
ACTOR, LEARNER = "actor", "learner"
ROLES = (ACTOR, LEARNER)
# The role each PolicyService method needs (a test checks that every method is listed).
METHOD_ROLES = {"ListPolicies": ACTOR, "GetSpecs": ACTOR, "GetInitialState": ACTOR, "Action": ACTOR,
                "ActionStream": ACTOR, "GetStats": ACTOR, "PushVariables": LEARNER, "GetVariables": LEARNER,
                "LoadCheckpoint": LEARNER, "ListFunctions": ACTOR, "CallFunction": ACTOR}
# The methods of the other services of this project that actors may call.
ACTOR_METHODS = frozenset({"tfa_policy_grpc.v1.SharedMemoryService/OpenSlot"}) | frozenset(
    # The Open Inference Protocol's service (policy_server.oip): inference and metadata, what actors do.
    f"inference.GRPCInferenceService/{name}" for name in ("ServerLive", "ServerReady", "ModelReady",
                                                          "ServerMetadata", "ModelMetadata", "ModelInfer",
                                                          "ModelStreamInfer"))
OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                           "grpc.reflection.v1.ServerReflection"})
# RFC 6750 b64token: what an `authorization: Bearer` value may hold.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_CHARS = 16
_LEVEL = {role: level for level, role in enumerate(ROLES)}


def check_token(token: str, where: str) -> None:
    """Raises ValueError (naming `where`, never the token) unless `token` can travel as a bearer token."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError(f"{where}: not a bearer token (letters, digits and -._~+/ with trailing =, "
                         "at most one token per entry)")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _entry(role: str, token: str, where: str) -> tuple[bytes, str]:
    check_token(token, where)
    if len(token) < MIN_TOKEN_CHARS:
        logger.warning("%s is shorter than %d characters: easy to guess (make one with "
                       "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)", where, MIN_TOKEN_CHARS)
    return _digest(token), role


def _checked(entries: list[tuple[bytes, str]], prefix: str = "") -> tuple[tuple[bytes, str], ...]:
    if not entries:
        raise ValueError(f"{prefix}no tokens given")
    if len({digest for digest, _ in entries}) != len(entries):
        raise ValueError(f"{prefix}the same token is given more than once")
    return tuple(entries)


class TokenAuth:
    """The bearer tokens a server accepts, and the role each one grants.

    Example:
      TokenAuth({"actor": [actor_token], "learner": [learner_token]})
      TokenAuth.from_file("/run/secrets/policy-tokens")

    Only SHA-256 digests of the tokens are kept.

    Args:
      tokens: role -> tokens (a string or an iterable of strings).

    Raises:
      ValueError: an unknown role, a malformed token, a token given twice, no token.
    """

    def __init__(self, tokens: Mapping[str, str | Iterable[str]]):
        entries: list[tuple[bytes, str]] = []
        for role, values in tokens.items():
            if role not in _LEVEL:
                raise ValueError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
            for value in [values] if isinstance(values, str) else values:
                entries.append(_entry(role, value, f"a token of role {role!r}"))
        self._entries = _checked(entries)

    @classmethod
    def parse(cls, text: str, source: str) -> "TokenAuth":
        """Reads `ROLE TOKEN` entries, one per line or separated by commas; `#` starts a comment line.

        Raises:
          ValueError: a malformed entry (named by its line in `source`), or no entry at all.
        """
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip().startswith("#"):
                continue
            for entry in filter(None, (e.strip() for e in line.split(","))):
                fields = entry.split()
                where = f"{source}, line {number}"
                if len(fields) != 2 or fields[0] not in _LEVEL:
                    raise ValueError(f"{where}: expected 'ROLE TOKEN' with ROLE one of {', '.join(ROLES)}")
                entries.append(_entry(fields[0], fields[1], where))
        auth = cls.__new__(cls)
        auth._entries = _checked(entries, f"{source}: ")
        return auth

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TokenAuth":
        """Reads a tokens file (see `parse`); warns when other users may read it.

        Raises:
          ValueError: the file cannot be read, or holds no valid tokens.
        """
        try:
            with open(path, encoding="utf-8") as f:
                mode = os.fstat(f.fileno()).st_mode
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read the tokens file {os.fspath(path)!r}: {getattr(e, 'strerror', e)}") \
                from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("the tokens file %s may be read by other users (mode %o): chmod 600 it",
                           os.fspath(path), stat.S_IMODE(mode))
        return cls.parse(text, f"tokens file {os.fspath(path)!r}")

    @classmethod
    def from_env(cls, name: str = TOKENS_ENV, environ: Mapping[str, str] | None = None) -> "TokenAuth | None":
        """The tokens in environment variable `name` (same format as a file), or None if it is unset.

        Raises:
          ValueError: the variable is set but holds no valid tokens.
        """
        text = (os.environ if environ is None else environ).get(name)
        return None if text is None else cls.parse(text, f"${name}")

    def role_of(self, token: str) -> str | None:
        """The role `token` grants, or None (compared in constant time against every known token)."""
        digest = _digest(token)
        role = None
        for known, granted in self._entries:
            if hmac.compare_digest(known, digest):
                role = granted
        return role

    def counts(self) -> dict[str, int]:
        """role -> how many tokens grant it."""
        counts = {role: 0 for role in ROLES}
        for _, role in self._entries:
            counts[role] += 1
        return {role: n for role, n in counts.items() if n}

    def summary(self) -> str:
        """e.g. "actor: 2, learner: 1" (how many tokens grant each role; never the tokens)."""
        return ", ".join(f"{role}: {n}" for role, n in self.counts().items())

    def __repr__(self) -> str:
        return f"TokenAuth({self.summary()})"


def server_credentials(cert_file: str, key_file: str, client_ca_file: str | None = None) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; with `client_ca_file`, clients need a certificate it signed (mTLS).

    Raises:
      ValueError: a file that cannot be read or holds no PEM block of its kind.
    """
    cert = _read_pem(cert_file, "--tls-cert", "CERTIFICATE")
    key = _read_pem(key_file, "--tls-key", "PRIVATE KEY")
    ca = _read_pem(client_ca_file, "--tls-client-ca", "CERTIFICATE") if client_ca_file else None
    _check_with_ssl(cert_file, key_file, client_ca_file)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def _check_with_ssl(cert_file: str, key_file: str, client_ca_file: str | None) -> None:
    """Loads the files into an `ssl` context: a key that is not the certificate's fails here, clearly,
    instead of as gRPC's "Failed to bind"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except ssl.SSLError as e:
        raise ValueError(f"--tls-key {key_file!r} does not go with --tls-cert {cert_file!r} (or one of them is "
                         f"damaged, or the key is encrypted): {e.reason or e}") from None
    if client_ca_file:
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except ssl.SSLError as e:
            raise ValueError(f"--tls-client-ca {client_ca_file!r}: not CA certificates: {e.reason or e}") from None


def _read_pem(path: str, what: str, marker: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path!r}: {e.strerror}") from None
    if b"-----BEGIN " not in data or f"{marker}-----".encode() not in data:
        raise ValueError(f"{what}: {path!r} holds no PEM {marker.lower()}")
    return data


def exposure_warning(address: str, tls: bool, auth: TokenAuth | None) -> str | None:
    """The one line an operator should read about serving `address` without TLS or tokens, or None.

    None on loopback addresses and unix sockets, and with both TLS and tokens.
    """
    if is_loopback(address) or (tls and auth is not None):
        return None
    traffic = "anyone on the network can read and alter its traffic" + (", bearer tokens included" if auth else "")
    reach = "anyone who reaches it can act and push weights"
    tls_fix, tokens_fix = "--tls-cert and --tls-key", f"--tokens-file or ${TOKENS_ENV}"
    if not tls and auth is None:
        missing, risk, fix = "TLS or tokens", f"{traffic}, and {reach}", f"{tls_fix}, and {tokens_fix}"
    elif not tls:
        missing, risk, fix = "TLS", traffic, tls_fix
    else:
        missing, risk, fix = "tokens", reach, tokens_fix
    return f"listening on {address}, beyond loopback, without {missing}: {risk} (add {fix})"


def describe(tls: bool, auth: TokenAuth | None) -> str:
    """e.g. "TLS, tokens for actor: 2, learner: 1" (never the tokens)."""
    tokens = f"tokens for {auth.summary()}" if auth else "no tokens"
    return f"{'TLS' if tls else 'plaintext'}, {tokens}"


_MISSING = ("missing_token", grpc.StatusCode.UNAUTHENTICATED,
            "this server needs a bearer token: send metadata 'authorization: Bearer <token>' "
            "(policy_client: token_file= or $TFA_POLICY_TOKEN)")
_MALFORMED = ("malformed_authorization", grpc.StatusCode.UNAUTHENTICATED,
              "the authorization metadata is not 'Bearer <token>'")
_INVALID = ("invalid_token", grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid on this server")
_UNKNOWN = object()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through when its bearer token's role may call the method; refuses it otherwise.

    Args:
      auth: the accepted tokens.
      log_interval: seconds between two log lines about refusals of one kind.
    """

    def __init__(self, auth: TokenAuth, log_interval: float = 10.0):
        self.auth = auth
        self._needs: dict[str, str | None] = {}  # method path -> role needed (None: open)
        self._log = _RefusalLog(log_interval)

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        need = self._needs.get(method, _UNKNOWN)
        if need is _UNKNOWN:
            need = self._need(method)
        if need is None:
            return await continuation(details)
        role, refusal = self._role(details.invocation_metadata)
        if role is not None:
            if _LEVEL[role] >= _LEVEL[need]:
                return await continuation(details)
            refusal = ("role_too_low", grpc.StatusCode.PERMISSION_DENIED,
                       f"role {role!r} may not call {method.rsplit('/', 1)[-1]}: it needs role {need!r}")
        handler = await continuation(details)
        return None if handler is None else self._refusing(handler, method, refusal)

    def _need(self, method: str) -> str | None:
        service, _, name = method.strip("/").partition("/")
        if service in OPEN_SERVICES:
            need = None
        elif service == SERVICE_NAME:
            need = METHOD_ROLES.get(name, ROLES[-1])
        elif f"{service}/{name}" in ACTOR_METHODS:
            self._needs[method] = ACTOR
            return ACTOR
        else:
            return ROLES[-1]  # not cached: clients choose these names
        if service in OPEN_SERVICES or name in METHOD_ROLES:
            self._needs[method] = need
        return need

    def _role(self, metadata: Any) -> tuple[str | None, tuple]:
        for key, value in metadata or ():
            if key == "authorization":
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    return None, _MALFORMED
                role = self.auth.role_of(token.strip())
                return role, _INVALID
        return None, _MISSING

    def _refusing(self, handler: grpc.RpcMethodHandler, method: str, refusal: tuple) -> grpc.RpcMethodHandler:
        """A handler of the same kind as `handler` that ends the call with the refusal's status."""
        reason, code, message = refusal
        error = errors.RemoteError(message, code, reason=reason)

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._log.record(reason, method, context.peer(), message)
            status.end(context, error)

        factory = {(False, False): grpc.unary_unary_rpc_method_handler,
                   (True, False): grpc.stream_unary_rpc_method_handler,
                   (False, True): grpc.unary_stream_rpc_method_handler,
                   (True, True): grpc.stream_stream_rpc_method_handler}[
            (bool(handler.request_streaming), bool(handler.response_streaming))]
        return factory(refuse)


class _RefusalLog:
    """Logs refused calls: at most one line per kind and interval, with how many went unlogged."""

    def __init__(self, interval: float):
        self.interval = interval
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def record(self, reason: str, method: str, peer: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval) < self.interval:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._last[reason] = now
        more = self._unlogged.pop(reason, 0)
        logger.warning("refused %s from %s: %s%s", method, peer, message,
                       f" ({more} more such refusals since the last line)" if more else "")
