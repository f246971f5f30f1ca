"""gRPC channels with this library's defaults: message sizes, wait-for-ready, retries."""

from __future__ import annotations

import json
from typing import Any, Sequence

import grpc

from policy_client.wire import DEFAULT_MAX_MESSAGE_BYTES, SERVICE_NAME

DEFAULT_TIMEOUT = 30.0
# gRPC's reconnect backoff starts at 1 s and grows to 120 s by default: a server (or replica) back after a
# restart would get no calls from a channel that last tried it long ago. Here a channel retries a server that
# is down every 0.1 s, growing to 0.5 s, so actors are back within half a second of the server serving again
# (a TCP connect attempt to a closed port costs the client next to nothing).
INITIAL_RECONNECT_BACKOFF_MS = 100
MAX_RECONNECT_BACKOFF_MS = 500
# Unary calls wait for the channel to be ready and retry UNAVAILABLE, so a
# restarting server is invisible to callers within their deadline.
METHOD_CONFIG = [{
    "name": [{"service": SERVICE_NAME}],
    "waitForReady": True,
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
}]


def service_config(load_balancing: str | None) -> str:
    """The channel's service config: retries, and with a balancing policy, client-side health checks.

    With health checking, a replica whose PolicyService health is not
    SERVING (still loading its policies, or draining on shutdown) gets no
    new calls or streams until it is.
    """
    config: dict[str, Any] = {"methodConfig": METHOD_CONFIG}
    if load_balancing:
        config["loadBalancingConfig"] = [{load_balancing: {}}]
        config["healthCheckConfig"] = {"serviceName": SERVICE_NAME}
    return json.dumps(config)


def several_addresses(target: str) -> bool:
    """Whether a target names (or may resolve to) more than one server: an ipv4:/ipv6: list or dns:///."""
    scheme, _, rest = target.partition(":")
    return scheme == "dns" or (scheme in ("ipv4", "ipv6") and "," in rest)


def make_channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None) -> grpc.Channel:
    """Opens a channel with this library's defaults (message sizes, retries).

    Args:
      address: a gRPC target: "host:port", "unix:/path", "dns:///name:port"
        or "ipv4:127.0.0.1:5001,127.0.0.1:5002".
      credentials: channel credentials for TLS; None connects in plaintext.
      options: extra channel options; they override the defaults (message
        sizes, retries, a reconnect backoff of 0.1 s growing to at most 0.5 s).
      load_balancing: e.g. "round_robin" to spread calls over every address
        the target resolves to (each stream stays on one server; a broken one
        is reopened on another). The default is round_robin for a target of
        several addresses (see several_addresses), else gRPC's pick_first;
        "pick_first" forces the latter. With a balancing policy, replicas
        that are not SERVING on gRPC health get no traffic.
    """
    if load_balancing is None and several_addresses(address):
        load_balancing = "round_robin"
    merged = {"grpc.max_receive_message_length": DEFAULT_MAX_MESSAGE_BYTES,
              "grpc.max_send_message_length": DEFAULT_MAX_MESSAGE_BYTES,
              "grpc.service_config": service_config(load_balancing), "grpc.enable_retries": 1,
              "grpc.initial_reconnect_backoff_ms": INITIAL_RECONNECT_BACKOFF_MS,
              "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS}
    merged.update(dict(options))
    items = list(merged.items())
    return grpc.secure_channel(address, credentials, items) if credentials else grpc.insecure_channel(address, items)
