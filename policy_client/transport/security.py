"""Client-side security: grpc:// and grpcs:// URIs, TLS credentials and bearer tokens.

Every client (PolicyClient, RemotePolicy, VariablePublisher, load) takes its
address through `endpoint`, which accepts a gRPC target ("host:port",
"unix:/path", "dns:///name:port", ...) or a URI:

    grpcs://host:port/policy?ca=CA.pem&cert=CLIENT.pem&key=CLIENT.key&server_name=NAME&token_file=PATH
    grpc://host:port/policy?token_file=PATH

`grpcs` is TLS (the system's root certificates unless `ca` is given; `cert`
and `key` are the client certificate for mTLS; `server_name` is the name the
server's certificate must hold, when it differs from `host`). A token never
goes in a URI (URIs end up in logs); it comes from `token=`, `token_file=`,
or else from $TFA_POLICY_TOKEN or the file named by $TFA_POLICY_TOKEN_FILE.

A token is sent as `authorization: Bearer <token>` by gRPC's own call
credentials, which gRPC sends only over a secure channel: TLS, or a local one
(`grpc.local_channel_credentials`: TCP to 127.0.0.1/::1/localhost, or a unix
socket; not encrypted, but the traffic never leaves the host). A token for a
plaintext connection to any other host is refused here, before anything is
sent: use TLS.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from typing import Any, Mapping

import grpc

from policy_client.wire.addresses import host_of, is_loopback_host

TOKEN_ENV = "TFA_POLICY_TOKEN"
TOKEN_FILE_ENV = "TFA_POLICY_TOKEN_FILE"
URI_SCHEMES = ("grpc", "grpcs")
URI_OPTIONS = ("ca", "cert", "key", "server_name", "token_file")
# RFC 6750 b64token: what an `authorization: Bearer` value may hold.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: gRPC target, policy name, channel credentials (token included), options."""

    target: str
    policy: str
    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, Any], ...] = ()


def is_uri(address: str) -> bool:
    """Whether `address` is a grpc:// or grpcs:// URI (rather than a gRPC target)."""
    return address.startswith(("grpc://", "grpcs://"))


def parse_uri(uri: str) -> tuple[str, str, str, dict[str, str]]:
    """(scheme, "host:port", policy name, options) of a grpc:// or grpcs:// URI.

    Raises:
      ValueError: no host:port, an unknown or repeated option, or a token in
        the URI (the message never repeats the query).
    """
    parsed = urllib.parse.urlsplit(uri)
    bare = f"{parsed.scheme}://{parsed.netloc}{parsed.path}"
    if parsed.scheme not in URI_SCHEMES or not parsed.netloc or parsed.fragment:
        raise ValueError(f"{bare!r}: expected grpc://host:port/policy_name or grpcs://host:port/policy_name")
    options: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
        if key in ("token", "access_token"):
            raise ValueError(f"{bare!r}: a token never goes in a URI (it would end up in logs); use "
                             f"?token_file=PATH, token_file=, or ${TOKEN_ENV}")
        if key not in URI_OPTIONS:
            raise ValueError(f"{bare!r}: unknown option {key!r}; the options are {', '.join(URI_OPTIONS)}")
        if key in options:
            raise ValueError(f"{bare!r}: option {key!r} is given twice")
        if not value:
            raise ValueError(f"{bare!r}: option {key!r} is empty")
        options[key] = value
    if parsed.scheme == "grpc" and set(options) & {"ca", "cert", "key", "server_name"}:
        raise ValueError(f"{bare!r}: ca, cert, key and server_name are TLS options: use grpcs://")
    return parsed.scheme, parsed.netloc, parsed.path.strip("/"), options


def tls_credentials(ca_file: str | None = None, cert_file: str | None = None,
                    key_file: str | None = None) -> grpc.ChannelCredentials:
    """TLS channel credentials from PEM files.

    Args:
      ca_file: the CA certificates the server's certificate must chain to
        (None: the system's root certificates).
      cert_file: the client certificate, for servers that require one
        (mTLS); with `key_file`, or neither.
      key_file: the client certificate's private key.

    Raises:
      ValueError: only one of cert_file and key_file.
      OSError: a file cannot be read.
    """
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs its key: give both cert and key, or neither")
    return grpc.ssl_channel_credentials(root_certificates=_read(ca_file), private_key=_read(key_file),
                                        certificate_chain=_read(cert_file))


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(os.path.expanduser(path), "rb") as f:
        return f.read()


def read_token(token: str | None = None, token_file: str | None = None,
               environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(token, where it came from) or None: `token`, else `token_file`, else $TFA_POLICY_TOKEN, else
    the file $TFA_POLICY_TOKEN_FILE names. `token=""` means no token, whatever the environment says.

    Raises:
      ValueError: an empty token file, or a value that is not a bearer token
        (the message names the source, never the value).
      OSError: a token file cannot be read.
    """
    environ = os.environ if environ is None else environ
    if token is not None:
        value, source = token, "token="
        if not token:
            return None
    elif token_file:
        value, source = _read_text(token_file), f"token file {token_file!r}"
    elif environ.get(TOKEN_ENV):
        value, source = environ[TOKEN_ENV], f"${TOKEN_ENV}"
    elif environ.get(TOKEN_FILE_ENV):
        path = environ[TOKEN_FILE_ENV]
        value, source = _read_text(path), f"token file {path!r} (${TOKEN_FILE_ENV})"
    else:
        return None
    value = value.strip()
    if not value:
        raise ValueError(f"{source} is empty")
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{source}: not a bearer token (one token of letters, digits and -._~+/ with "
                         "trailing =)")
    return value, source


def _read_text(path: str) -> str:
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        return f.read()


def local_connection_type(target: str) -> grpc.LocalConnectionType | None:
    """UDS for unix sockets, LOCAL_TCP when every host of `target` is loopback, else None."""
    if target.startswith(("unix:", "unix-abstract:")):
        return grpc.LocalConnectionType.UDS
    if target.startswith(("ipv4:", "ipv6:")):
        hosts = [host_of(part) for part in target.partition(":")[2].split(",")]
    elif target.startswith("dns:"):
        rest = target[len("dns:"):]
        hosts = [host_of(rest[2:].partition("/")[2] if rest.startswith("//") else rest)]
    else:
        hosts = [host_of(target)]
    return grpc.LocalConnectionType.LOCAL_TCP if hosts and all(map(is_loopback_host, hosts)) else None


def with_token(target: str, credentials: grpc.ChannelCredentials | None, token: str,
               source: str = "token=") -> grpc.ChannelCredentials:
    """`credentials` (or local credentials, for a local target) composed with the token's call credentials.

    Raises:
      ValueError: no credentials and a target that is not local: the token
        would travel in plaintext.
    """
    if credentials is None:
        kind = local_connection_type(target)
        if kind is None:
            raise ValueError(f"a bearer token (from {source}) is only sent over TLS or to a local address "
                             f"(127.0.0.1, ::1, localhost, unix:), and {target!r} is neither: connect with "
                             "grpcs:// (or credentials=tls_credentials(...)), or pass token='' to send none")
        credentials = grpc.local_channel_credentials(kind)
    return grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))


def endpoint(address: str, policy: str = "", *, credentials: grpc.ChannelCredentials | None = None,
             token: str | None = None, token_file: str | None = None,
             environ: Mapping[str, str] | None = None) -> Endpoint:
    """How a client connects to `address` (a gRPC target or a grpc:// / grpcs:// URI).

    Args:
      address: see the module docstring.
      policy: the policy name; a URI's path gives it when this is empty.
      credentials: channel credentials (TLS); a grpcs:// URI makes them from
        its options when this is None.
      token, token_file: the bearer token (see read_token).
      environ: the environment to read $TFA_POLICY_TOKEN[_FILE] from (default os.environ).

    Raises:
      ValueError: a malformed URI, options that contradict each other, a token
        for a plaintext non-local connection, a malformed token.
      OSError: a certificate or token file cannot be read.
    """
    options: tuple[tuple[str, Any], ...] = ()
    if is_uri(address):
        scheme, address, uri_policy, query = parse_uri(address)
        if policy and uri_policy and policy != uri_policy:
            raise ValueError(f"the URI names policy {uri_policy!r} and policy= {policy!r}: give one")
        policy = policy or uri_policy
        tls_files = [query.get(k) for k in ("ca", "cert", "key")]
        if credentials is not None and any(tls_files):
            raise ValueError("give TLS files in the URI or credentials=, not both")
        if "token_file" in query:
            if token is not None or token_file:
                raise ValueError("give the token file in the URI or token=/token_file=, not both")
            token_file = query["token_file"]
        if scheme == "grpcs" and credentials is None:
            credentials = tls_credentials(*tls_files)
        if "server_name" in query:
            options = (("grpc.ssl_target_name_override", query["server_name"]),)
    found = read_token(token, token_file, environ)
    if found is not None:
        credentials = with_token(address, credentials, *found)
    return Endpoint(address, policy, credentials, options)
