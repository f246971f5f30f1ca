"""gRPC channels with this library's defaults: message sizes, wait-for-ready, retries."""

from __future__ import annotations

import json
from typing import Any, Sequence

import grpc

from policy_client.wire import SERVICE_NAME

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Unary calls wait for the channel to be ready and retry UNAVAILABLE, so a
# restarting server is invisible to callers within their deadline.
SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": SERVICE_NAME}],
        "waitForReady": True,
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "2s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
})


def make_channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None) -> grpc.Channel:
    """Opens a channel with this library's defaults (message sizes, retries).

    Args:
      address: a gRPC target: "host:port", "unix:/path", "dns:///name:port"
        or "ipv4:127.0.0.1:5001,127.0.0.1:5002".
      credentials: channel credentials for TLS; None connects in plaintext.
      options: extra channel options; they override the defaults.
      load_balancing: e.g. "round_robin" to spread unary calls over every
        address the target resolves to (each stream stays on one server).
    """
    merged = {"grpc.max_receive_message_length": DEFAULT_MAX_MESSAGE_BYTES,
              "grpc.max_send_message_length": DEFAULT_MAX_MESSAGE_BYTES,
              "grpc.service_config": SERVICE_CONFIG, "grpc.enable_retries": 1}
    if load_balancing:
        merged["grpc.lb_policy_name"] = load_balancing
    merged.update(dict(options))
    items = list(merged.items())
    return grpc.secure_channel(address, credentials, items) if credentials else grpc.insecure_channel(address, items)
