"""Server settings, one object per entity: the server (ServerConfig), each policy (PolicyConfig), and how
a policy's requests are batched (BatchingConfig)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grpc

from policy_client.wire import DEFAULT_MAX_MESSAGE_BYTES
from policy_server.engine.sessions import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS
from policy_server.security import TokenAuth


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """How requests are merged into batches.

    Attributes:
      max_batch_size: rows per backend call; a batch closes when it is full.
        A request holding more rows is split across batches (its rows stay in
        order and it gets one answer), unless it is seeded or its backend is
        not batchable: those run alone, whole.
      max_batch_delay: seconds a batch waits after its first row for more rows.
        The default 0 batches whatever queued while the previous batch ran
        ("natural" batching): a lone actor never waits, and under load the
        batches fill by themselves. A small delay (e.g. 0.002) trades latency
        for larger batches when actors arrive spread out.
      max_queue_size: requests waiting per policy; beyond it requests are
        rejected with RESOURCE_EXHAUSTED.
      allowed_batch_sizes: when set, batches are padded up to the next of these
        sizes (for backends compiled for fixed shapes); the largest must be
        >= max_batch_size.
      min_batch_size: a batch waits for at least this many rows, up to
        `min_batch_timeout` after its first row (TorchRL's min_batch_size).
        Helps when many actors send at once but a little apart: without it,
        the first arrivals go alone. 1 (default) never waits for company.
      min_batch_timeout: seconds a batch below min_batch_size waits at most.
      target_latency: seconds; when set, the server tunes the batch delay
        (from 0 up to half of it) so that the p99 of queue wait + inference
        stays under it: batches grow while answers are fast and shrink when
        they are not. A batch as large as the largest recent one stops
        waiting. It replaces max_batch_delay.
      inline_threshold: seconds. While the policy's recent batches took less
        than this, a batch runs on the event loop itself: handing it to the
        inference thread and back costs more than such a call. Slower policies
        run on the inference thread, so the server goes on reading requests
        meanwhile. 0 always uses the inference thread.
    """

    max_batch_size: int = 64
    max_batch_delay: float = 0.0
    max_queue_size: int = 4096
    allowed_batch_sizes: tuple[int, ...] = ()
    min_batch_size: int = 1
    min_batch_timeout: float = 0.002
    target_latency: float | None = None
    inline_threshold: float = 0.002

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_batch_delay < 0:
            raise ValueError(f"max_batch_delay must be >= 0, got {self.max_batch_delay}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError(f"min_batch_size must be in [1, max_batch_size={self.max_batch_size}], "
                             f"got {self.min_batch_size}")
        if self.min_batch_timeout < 0:
            raise ValueError(f"min_batch_timeout must be >= 0, got {self.min_batch_timeout}")
        if self.target_latency is not None and self.target_latency <= 0:
            raise ValueError(f"target_latency must be > 0, got {self.target_latency}")
        if self.inline_threshold < 0:
            raise ValueError(f"inline_threshold must be >= 0, got {self.inline_threshold}")
        sizes = tuple(sorted(self.allowed_batch_sizes))
        if sizes and (sizes[0] < 1 or sizes[-1] < self.max_batch_size):
            raise ValueError(f"allowed_batch_sizes {sizes} must be >= 1 and reach max_batch_size "
                             f"{self.max_batch_size}")
        object.__setattr__(self, "allowed_batch_sizes", sizes)


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """One hosted policy: where it comes from, how its requests are batched, what it follows, its sessions.

    What Reverb's `Table` is to a table. A setting left None takes the
    server's default (`ServerConfig.batching`, `max_sessions`,
    `session_idle_timeout`); `ServerConfig.policy(name)` gives the settings
    with the defaults filled in.

    Attributes:
      name: the policy's name (requests name it; "" names the default policy,
        the first one).
      source: what to serve: a Backend, a policy (any PyPolicy, a TFPolicy), a
        PolicySaver SavedModel path, or a function building one (called on a
        thread after the port is open, so health says NOT_SERVING while it
        loads). None: the source given to PolicyServer under this name.
      batching: how its requests are batched.
      follow_checkpoints: a PolicySaver checkpoint directory
        (`<root>/policies/checkpoints`, any tf.io.gfile path) whose newest
        checkpoint it serves.
      follow_reverb: the address of a Reverb server holding a
        ReverbVariableContainer whose variables it serves.
      reverb_table: that container's table (None: TF-Agents' default, "variables").
      max_sessions: server-held recurrent sessions (OIP `sequence_id`,
        `ActionRequest.session`) it keeps open at once; one more is refused
        with RESOURCE_EXHAUSTED.
      session_idle_timeout: seconds without a step after which a session is freed.
    """

    name: str
    source: Any = None
    batching: BatchingConfig | None = None
    follow_checkpoints: str | None = None
    follow_reverb: str | None = None
    reverb_table: str | None = None
    max_sessions: int | None = None
    session_idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"a policy's name is a string, got {type(self.name).__name__}")
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ValueError(f"policy {self.name!r}: max_sessions must be >= 1, got {self.max_sessions}")
        if self.session_idle_timeout is not None and self.session_idle_timeout <= 0:
            raise ValueError(f"policy {self.name!r}: session_idle_timeout must be > 0, got "
                             f"{self.session_idle_timeout}")

    @property
    def follows(self) -> bool:
        """Whether its weights follow a source (a checkpoint directory or a Reverb container)."""
        return bool(self.follow_checkpoints or self.follow_reverb)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How a PolicyServer runs: server-wide settings, and one PolicyConfig per policy.

    Attributes:
      address: "host:port" to bind (port 0 picks a free port), or "unix:PATH".
      batching: the batching settings of every policy that has none of its own.
      max_message_bytes: largest request or response accepted.
      stats_interval: seconds between stats lines in the log (0: never).
      credentials: server credentials for TLS (see security.server_credentials);
        None serves plaintext.
      auth: the bearer tokens calls need and the roles they grant (see
        security.TokenAuth); None: every call is allowed.
      follow_interval: seconds between polls of followed sources.
      metrics_port: serve Prometheus metrics over HTTP (GET /metrics) on this
        port (0 picks a free one); None serves none and counts nothing.
      metrics_host: the address the metrics endpoint binds.
      load_report_interval: seconds between "still loading" log lines of a
        policy that takes long to load (0: none).
      shared_memory: offer same-host actors a shared-memory data plane
        (SharedMemoryService; see policy_server.shm) where the host has one.
      max_sessions: the server-held sessions each policy keeps open at once,
        unless its PolicyConfig says otherwise.
      session_idle_timeout: seconds without a step after which a session is
        freed, unless its policy's PolicyConfig says otherwise.
      reuse_port: bind with SO_REUSEPORT, sharing the port with other
        processes doing the same (the workers of `policy-server --workers N`,
        policy_server/cli/supervisor.py); the kernel spreads connections across them.
      reflection: offer gRPC server reflection (what grpcurl and similar
        tools use to list services and read their schemas without the
        .proto files); False: reflection requests get UNIMPLEMENTED.
      stream_acks: "optional": an ActionStream whose client acknowledges
        (ActionRequest.answers_read) runs at most 16 answers ahead of what it
        read, and one whose client does not is held back by HTTP/2 flow
        control (the client's receive window, megabytes of small answers).
        "required": every ActionStream request must acknowledge, else it is
        answered FAILED_PRECONDITION uncomputed, so no client gets work past
        16 unread answers (for servers facing clients you do not control;
        clients of the first v1 protos then need the unary Action call).
      policies: the settings of each policy (a PolicyConfig per name; a
        policy without one takes the defaults above).
    """

    address: str = "127.0.0.1:0"
    batching: BatchingConfig = BatchingConfig()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    stats_interval: float = 0.0
    credentials: grpc.ServerCredentials | None = None
    auth: TokenAuth | None = None
    follow_interval: float = 2.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    load_report_interval: float = 10.0
    shared_memory: bool = True
    max_sessions: int = DEFAULT_MAX_SESSIONS
    session_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    reuse_port: bool = False
    reflection: bool = True
    stream_acks: str = "optional"
    policies: Sequence[PolicyConfig] = ()

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be >= 1, got {self.max_message_bytes}")
        if self.follow_interval <= 0:
            raise ValueError(f"follow_interval must be > 0, got {self.follow_interval}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in [0, 65535], got {self.metrics_port}")
        if self.load_report_interval < 0:
            raise ValueError(f"load_report_interval must be >= 0, got {self.load_report_interval}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.session_idle_timeout <= 0:
            raise ValueError(f"session_idle_timeout must be > 0, got {self.session_idle_timeout}")
        if self.stream_acks not in ("optional", "required"):
            raise ValueError(f"stream_acks must be 'optional' or 'required', got {self.stream_acks!r}")
        policies = tuple(self.policies)
        names = [p.name for p in policies]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"policies {twice} have more than one PolicyConfig")
        object.__setattr__(self, "policies", policies)

    def policy(self, name: str) -> PolicyConfig:
        """The settings of policy `name`: its PolicyConfig with the server's defaults filled in."""
        own = next((p for p in self.policies if p.name == name), PolicyConfig(name))
        return dataclasses.replace(
            own, batching=own.batching or self.batching,
            max_sessions=own.max_sessions if own.max_sessions is not None else self.max_sessions,
            session_idle_timeout=(own.session_idle_timeout if own.session_idle_timeout is not None
                                  else self.session_idle_timeout))
