"""`policy-server`: serve TF-Agents policies over gRPC (SavedModels, or policies built by code).

Output: stdout gets two lines for scripts, "policy-server listening on
ADDRESS (loading policies)" once the port is open and "policy-server serving
NAMES on ADDRESS" once every policy serves (with --log-format json, both are
JSON objects). The log goes to stderr: a line when the server listens (with
how it is secured), one per policy when it serves, one every 10 s while a
policy still loads, stats lines while there is traffic, warnings and errors.
TensorFlow's, gym's and absl's start-up chatter is kept off it unless
--log-level is DEBUG (see logs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import os
import signal
import sys
from typing import Any, Callable, Sequence

from policy_server import security
from policy_server.cli import config_file
from policy_server.telemetry import logs
from policy_server.engine import sessions
from policy_server.cli import supervisor as workers
from policy_server.config import BatchingConfig, PolicyConfig, ServerConfig

logger = logging.getLogger("policy_server")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, over the settings of --config FILE (flags win); `args.file` is the FileConfig or None.

    Raises:
      SystemExit: bad flags, or a config file that cannot be read or is invalid.
    """
    parser = _parser()
    file = _config_file(argv)
    if file is not None:
        parser.set_defaults(**file.settings)
    args = parser.parse_args(argv)
    args.file = file
    return args


def _config_file(argv: Sequence[str] | None) -> config_file.FileConfig | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    path = pre.parse_known_args(argv)[0].config
    try:
        return config_file.load(path) if path else None
    except ValueError as e:
        raise SystemExit(f"policy-server: --config {e}") from None


def _parser() -> argparse.ArgumentParser:
    defaults = BatchingConfig()
    parser = argparse.ArgumentParser(
        prog="policy-server", description=__doc__.split("\n", 1)[0],
        epilog="Give at least one --policy or --factory, or --demo, or a --config file with policies. The "
               "first policy named is the default one (for requests with an empty policy name).")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="read settings and policies from a TOML file (see policy_server/cli/config_file.py); "
                             "flags given as well override its settings")
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=SAVED_MODEL_DIR",
                        help="a PolicySaver SavedModel to serve under NAME (repeatable)")
    parser.add_argument("--factory", action="append", default=[], metavar="NAME=MODULE:CALLABLE",
                        help="serve under NAME what CALLABLE() returns: a TFPolicy, PyTFEagerPolicy, PyPolicy or "
                             "Backend (repeatable); MODULE must be importable")
    parser.add_argument("--demo", action="store_true",
                        help="serve the untrained CartPole DQN policies of examples/cartpole.py: 'cartpole' "
                             "(greedy) and 'cartpole_collect' (epsilon-greedy); needs a source checkout")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--address", default=None,
                        help="full address to bind instead of --host/--port, e.g. unix:/run/policy.sock")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="N server processes sharing the port (SO_REUSEPORT), each loading the policies, "
                             "under one supervisor; worker I serves metrics on --metrics-port + I (see "
                             "policy_server/cli/supervisor.py; default: %(default)s)")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                        help="rows per inference call (default: %(default)s)")
    parser.add_argument("--max-batch-delay-ms", type=float, default=defaults.max_batch_delay * 1e3,
                        help="how long a batch waits for more rows after its first (default: %(default)s)")
    parser.add_argument("--max-queue-size", type=int, default=defaults.max_queue_size,
                        help="requests waiting per policy before RESOURCE_EXHAUSTED (default: %(default)s)")
    parser.add_argument("--min-batch-size", type=int, default=defaults.min_batch_size,
                        help="rows a batch waits for, up to --min-batch-timeout-ms (default: %(default)s)")
    parser.add_argument("--min-batch-timeout-ms", type=float, default=defaults.min_batch_timeout * 1e3,
                        help="longest wait for --min-batch-size rows (default: %(default)s)")
    parser.add_argument("--target-latency-ms", type=float, default=None,
                        help="tune the batch delay so that p99 queue wait + inference stays under this "
                             "(replaces --max-batch-delay-ms)")
    parser.add_argument("--allowed-batch-sizes", default="",
                        help="comma-separated sizes to pad batches to, e.g. 1,8,32,64")
    parser.add_argument("--max-message-mb", type=int, default=64,
                        help="largest request/response in MiB (default: %(default)s)")
    parser.add_argument("--stats-interval", type=float, default=30.0,
                        help="seconds between stats lines in the log; 0 disables (default: %(default)s)")
    parser.add_argument("--follow-checkpoints", action="append", default=[], metavar="NAME=CHECKPOINT_DIR",
                        help="load each new policy_checkpoint_NNNNNNNNNN that tf_agents.train.Learner's "
                             "PolicySavedModelTrigger writes to CHECKPOINT_DIR (<root>/policies/checkpoints) "
                             "into policy NAME (repeatable)")
    parser.add_argument("--follow-reverb", action="append", default=[], metavar="NAME=REVERB_ADDRESS",
                        help="load new variables from a ReverbVariableContainer on REVERB_ADDRESS into "
                             "policy NAME (repeatable)")
    parser.add_argument("--reverb-table", default=None,
                        help="the variable container's table, for every policy that follows Reverb without a "
                             "reverb_table of its own in the config file (default: variables)")
    parser.add_argument("--follow-interval", type=float, default=2.0,
                        help="seconds between polls of followed sources (default: %(default)s)")
    parser.add_argument("--max-sessions", type=int, default=sessions.DEFAULT_MAX_SESSIONS,
                        help="server-held recurrent sessions (OIP sequence_id) per policy, unless its config-file "
                             "table sets max_sessions; one more is refused with RESOURCE_EXHAUSTED (default: "
                             "%(default)s)")
    parser.add_argument("--session-idle-timeout", type=float, default=sessions.DEFAULT_IDLE_TIMEOUT, metavar="S",
                        help="seconds without a step after which a session is freed (default: %(default)s)")
    parser.add_argument("--shared-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="offer actors on this host a shared-memory data plane (negotiated by the clients; "
                             "default: on)")
    parser.add_argument("--stream-acks", choices=("optional", "required"), default="optional",
                        help="'required': every ActionStream request must carry answers_read (the answers its "
                             "client has read), else it is answered FAILED_PRECONDITION uncomputed, so that a "
                             "client that stops reading gets no work past 16 unread answers; 'optional' also "
                             "serves clients that do not acknowledge (the first v1 protos), held back by HTTP/2 "
                             "flow control alone (default: %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve Prometheus metrics on http://METRICS_HOST:PORT/metrics (0 picks a free "
                             "port); default: no metrics")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address the metrics endpoint binds (default: %(default)s)")
    parser.add_argument("--log-level", default="INFO",
                        help="logging level (default: %(default)s); DEBUG also lets TensorFlow, gym and absl "
                             "print what they print at start-up")
    parser.add_argument("--log-format", choices=logs.FORMATS, default="text",
                        help="text lines, or one JSON object per line for log shippers (default: %(default)s)")
    _add_security_args(parser)
    return parser


def _add_security_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "security", "TLS, mTLS, bearer tokens and reflection. Secrets are read from files or the environment, "
                    "never from the command line. Health checking stays open to everyone, and so does reflection "
                    "unless --no-reflection.")
    group.add_argument("--tls-cert", metavar="PATH", help="serve TLS with this certificate chain (PEM); "
                                                          "needs --tls-key")
    group.add_argument("--tls-key", metavar="PATH", help="the private key of --tls-cert (PEM)")
    group.add_argument("--tls-client-ca", metavar="PATH",
                       help="require a client certificate signed by these CA certificates (PEM) on every "
                            "connection (mTLS); needs --tls-cert")
    group.add_argument("--tokens-file", metavar="PATH",
                       help="require 'authorization: Bearer TOKEN' on every policy call; the file holds one "
                            f"'ROLE TOKEN' per line ('#' comments). Roles: {security.ACTOR} (list, specs, "
                            f"initial state, actions, stats) and {security.LEARNER} (also push and read "
                            f"variables, load checkpoints). Without it, ${security.TOKENS_ENV} is read the same way if set; "
                            "with neither, calls need no token")
    group.add_argument("--reflection", action=argparse.BooleanOptionalAction, default=True,
                       help="offer gRPC server reflection, open to every client (grpcurl lists the services and "
                            "reads their schemas without the .proto files); --no-reflection answers it "
                            "UNIMPLEMENTED (default: on)")


def security_settings(args: argparse.Namespace) -> tuple[Any, security.TokenAuth | None]:
    """(server credentials or None, tokens or None) from the security flags and the environment.

    Raises:
      SystemExit: a flag without its partner, a file that cannot be read, no valid token.
    """
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("policy-server: --tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise SystemExit("policy-server: --tls-client-ca needs --tls-cert and --tls-key")
    if args.tokens_file and security.TOKENS_ENV in os.environ:
        raise SystemExit(f"policy-server: tokens come from --tokens-file or ${security.TOKENS_ENV}, not both")
    try:
        credentials = security.server_credentials(args.tls_cert, args.tls_key, args.tls_client_ca) \
            if args.tls_cert else None
        auth = security.TokenAuth.from_file(args.tokens_file) if args.tokens_file \
            else security.TokenAuth.from_env()
    except ValueError as e:
        raise SystemExit(f"policy-server: {e}") from None
    return credentials, auth


def batching_config(args: argparse.Namespace) -> BatchingConfig:
    """The batching settings of every policy (flags, over the config file's [batching]).

    Raises:
      SystemExit: invalid settings.
    """
    try:
        sizes = tuple(int(s) for s in args.allowed_batch_sizes.split(",") if s.strip())
        return BatchingConfig(max_batch_size=args.max_batch_size, max_batch_delay=args.max_batch_delay_ms / 1e3,
                              max_queue_size=args.max_queue_size, allowed_batch_sizes=sizes,
                              min_batch_size=args.min_batch_size, min_batch_timeout=args.min_batch_timeout_ms / 1e3,
                              target_latency=args.target_latency_ms / 1e3 if args.target_latency_ms else None)
    except ValueError as e:
        raise SystemExit(f"policy-server: {e}") from None


def _file_policies(args: argparse.Namespace) -> list[config_file.PolicyEntry]:
    file = getattr(args, "file", None)
    return list(file.policies.values()) if file is not None else []


DEMO_FACTORIES = ("cartpole=examples.cartpole:cartpole_q_policy",
                  "cartpole_collect=examples.cartpole:cartpole_collect_policy")


def policy_configs(args: argparse.Namespace, base: BatchingConfig | None = None) -> list[PolicyConfig]:
    """One PolicyConfig per policy: the config file's `[policies.NAME]` tables, then --policy, --factory and
    --demo; --follow-checkpoints, --follow-reverb and --reverb-table over the file's settings.

    A flag naming a policy of the config file replaces its source there; a
    policy's own `batching` table applies over `base` (the [batching] defaults
    and their flags).

    Raises:
      SystemExit: nothing to serve, a malformed flag, a name given twice by
        flags, a follow flag naming no policy, or invalid settings (naming the policy).
    """
    base = base or batching_config(args)
    settings: dict[str, dict[str, Any]] = {}
    for entry in _file_policies(args):
        source = _factory(entry.factory) if entry.factory else lambda path=entry.saved_model: path
        own = {"source": source, "follow_checkpoints": entry.follow_checkpoints, "follow_reverb": entry.follow_reverb,
               "reverb_table": entry.reverb_table, "max_sessions": entry.max_sessions,
               "session_idle_timeout": entry.session_idle_timeout}
        if entry.batching:
            try:
                own["batching"] = dataclasses.replace(base, **config_file.batching_fields(entry.batching))
            except ValueError as e:
                raise SystemExit(f"policy-server: [policies.{entry.name}] batching: {e}") from None
        settings[entry.name] = own
    flagged: set[str] = set()

    def add(name: str, source: Callable[[], Any]) -> None:
        if name in flagged:
            raise SystemExit(f"policy {name!r} is given twice")
        flagged.add(name)
        settings.setdefault(name, {})["source"] = source

    for name, path in _pairs(args.policy, "--policy").items():
        add(name, lambda path=path: path)  # a path: served as a SavedModel (backends.backend_for)
    for name, target in _pairs([*args.factory, *(DEMO_FACTORIES if args.demo else ())], "--factory").items():
        add(name, _factory(target))
    if not settings:
        raise SystemExit("policy-server: nothing to serve; give --policy NAME=SAVED_MODEL_DIR, "
                         "--factory NAME=MODULE:CALLABLE, or --demo (or a --config file with [policies.NAME])")
    for flag, key in (("--follow-checkpoints", "follow_checkpoints"), ("--follow-reverb", "follow_reverb")):
        for name, value in _pairs(getattr(args, key), flag).items():
            if name not in settings:
                raise SystemExit(f"policy-server: {flag} {name}=...: no policy named {name!r} is served")
            settings[name][key] = value
    for own in settings.values():
        if args.reverb_table and own.get("follow_reverb") and not own.get("reverb_table"):
            own["reverb_table"] = args.reverb_table
    try:
        return [PolicyConfig(name, **own) for name, own in settings.items()]
    except ValueError as e:
        raise SystemExit(f"policy-server: {e}") from None


def _factory(target: str) -> Callable[[], Any]:
    """The callable MODULE:CALLABLE names (imported when the server loads its policies)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"--factory wants NAME=MODULE:CALLABLE, got {target!r}")

    def build() -> Any:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            hint = " (--demo needs a source checkout: run it from the repository root)" \
                if module_name.startswith("examples") else ""
            raise ImportError(f"cannot import {module_name!r} for --factory: {e}{hint}") from None
        return getattr(module, attr)()

    return build


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise SystemExit(f"{flag} wants NAME=VALUE, got {value!r}")
        if name in pairs:
            raise SystemExit(f"{flag} {name!r} is given twice")
        pairs[name] = target
    return pairs


def server_config(args: argparse.Namespace, secured: tuple[Any, security.TokenAuth | None] | None = None,
                  ) -> ServerConfig:
    """The ServerConfig of the flags and config file, with a PolicyConfig (and its source) per policy;
    `secured` is security_settings(args) (computed if None).

    Raises:
      SystemExit: invalid settings, or nothing to serve.
    """
    credentials, auth = secured if secured is not None else security_settings(args)
    batching = batching_config(args)
    try:
        return ServerConfig(address=args.address or f"{args.host}:{args.port}", batching=batching,
                            max_message_bytes=args.max_message_mb << 20, stats_interval=args.stats_interval,
                            follow_interval=args.follow_interval, credentials=credentials, auth=auth,
                            metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                            max_sessions=args.max_sessions, session_idle_timeout=args.session_idle_timeout,
                            shared_memory=args.shared_memory, reuse_port=args.worker_index is not None,
                            reflection=args.reflection, stream_acks=args.stream_acks, policies=policy_configs(args, batching))
    except ValueError as e:
        raise SystemExit(f"policy-server: {e}") from None


async def serve(args: argparse.Namespace, secured: tuple[Any, security.TokenAuth | None] | None = None) -> None:
    """Runs the server until SIGTERM/SIGINT; `secured` is security_settings(args) (computed if None).

    Raises:
      SystemExit: the server cannot start, or a policy failed to load (exit code 1; the log says why).
    """
    from policy_server.server import PolicyServer  # pylint: disable=import-outside-toplevel

    config = server_config(args, secured)
    try:
        server = PolicyServer(config=config)
    except ValueError as e:
        raise SystemExit(f"policy-server: {e}") from None
    if args.worker_index is not None:
        workers.describe_worker(server, args.worker_index)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: _begin_shutdown(server, s))
    try:
        await server.start(wait_until_loaded=False)
    except OSError as e:
        raise SystemExit(f"policy-server: {e}") from None
    metrics = f"; metrics on {server.metrics_url}" if server.metrics_url else ""
    _announce(args, f"policy-server listening on {server.bound_address} (loading policies){metrics}",
              event="listening", address=server.bound_address, metrics=server.metrics_url)
    try:
        await server.wait_until_loaded()
    except asyncio.CancelledError:
        if not server.stopping:  # stop() cancels the loading: a signal came first.
            raise
    except Exception:  # pylint: disable=broad-except  # the server logged which policy and why
        await server.stop(grace=1.0)
        raise SystemExit(1) from None
    else:
        names = [h.name for h in server.registry]
        _announce(args, f"policy-server serving {', '.join(names)} on {server.bound_address}", event="ready",
                  address=server.bound_address, policies=",".join(names))
    await server.wait_for_termination()


def _announce(args: argparse.Namespace, line: str, **fields: Any) -> None:
    """One of the two stdout lines (a JSON object with --log-format json)."""
    text = logs.json_line(line, logger=logger.name, **fields) if args.log_format == "json" else line
    print(text, flush=True)


def _begin_shutdown(server, sig: signal.Signals) -> None:
    logger.info("received %s: answering accepted requests, then stopping", sig.name)
    asyncio.ensure_future(server.stop())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.quiet_libraries(verbose=args.log_level.upper() == "DEBUG")  # before TensorFlow and gym load
    try:
        handler = logs.configure(args.log_level, args.log_format)
    except ValueError as e:
        raise SystemExit(f"policy-server: {e}") from None
    secured = security_settings(args)  # before anything loads: a bad flag fails at once
    if args.workers < 1:
        raise SystemExit(f"policy-server: --workers must be >= 1, got {args.workers}")
    if args.workers > 1:
        policy_configs(args)  # something to serve, well formed: checked here once, not by every worker
        return workers.supervise(args, argv)
    if args.worker_index is not None:
        workers.join_supervisor()
        workers.tag_logs(handler, args.worker_index)
    if args.demo and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --demo imports examples/ from a source checkout, as `python -m` would
    if args.metrics_port is not None:
        from prometheus_client import disable_created_metrics  # pylint: disable=import-outside-toplevel

        disable_created_metrics()  # no *_created series beside every counter and histogram
    asyncio.run(serve(args, secured))
    return 0
