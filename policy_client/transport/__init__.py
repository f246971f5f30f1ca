"""How a client reaches a server: channels, action streams, the shared-memory slot, credentials.

- `channel`: gRPC channels with this library's defaults (sizes, retries, balancing);
- `security`: TLS credentials, bearer tokens and `grpc://` / `grpcs://` URIs;
- `stream`: one bidirectional `ActionStream`;
- `sender`: sends action requests over a stream, or unary, and resends what a broken stream lost;
- `shm`: the shared-memory data plane: a slot negotiated over gRPC, used behind the same API.
"""

# Action requests this process sent on each data plane (gRPC: stream or unary; shm: through a slot). The
# test suite reads them to prove that a forced TFA_POLICY_DATA_PLANE was the plane its calls took.
ACTIONS_SENT = {"grpc": 0, "shm": 0}
