"""`policy-client`: a policy server from the terminal (list, specs, act, stats, push and pull variables).

In the manner of `saved_model_cli` and `grpcurl`; no TensorFlow needed
(PolicyClient, VariablePublisher and numpy). Examples:

    policy-client list 127.0.0.1:50051
    policy-client specs grpc://127.0.0.1:50051/cartpole
    policy-client act 127.0.0.1:50051 --policy cartpole --steps 3 --seed 7
    policy-client act 127.0.0.1:50051 --policy cartpole_collect --request-seed 1
    policy-client act grpcs://policy.internal:50051/cartpole?ca=ca.pem --input step.json
    policy-client stats 127.0.0.1:50051 --json
    policy-client pull 127.0.0.1:50051 --policy cartpole --output weights.npz
    policy-client push 127.0.0.1:50051 weights.npz --policy cartpole --version 1200

ADDRESS is a gRPC target (host:port, unix:PATH, dns:///name:port) or a
grpc:// / grpcs:// URI (policy_client.transport.security). TLS: grpcs://, or --tls,
--ca, --cert/--key (mTLS), --server-name. The bearer token comes from
--token-file, $TFA_POLICY_TOKEN or the file $TFA_POLICY_TOKEN_FILE names;
never from the command line. push and pull need a learner token on servers
that check tokens. Exit codes: 0 done, 1 the server refused or failed (its
status is printed), 2 bad arguments or files.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

import numpy as np

from policy_client.cli import output as cli_format
from policy_client.cli import inputs as cli_values
from policy_client.transport import security
from policy_client.client import PolicyClient
from policy_client.learner.publisher import VariablePublisher
from policy_client.wire.errors import RemoteError

PROG = "policy-client"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n", 1)[0].replace("`", ""),
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = _common_parser()
    verbs.add_parser("list", parents=[common], help="the policies the server hosts")
    verbs.add_parser("specs", parents=[common], help="a policy's specs, nested, with bounds")
    act = verbs.add_parser("act", parents=[common], help="ask for actions: random valid time steps from the specs, "
                                                         "or values from a file")
    act.add_argument("--input", metavar="FILE", help="the time step, from a .json or .npz file (fields "
                                                     "observation[, step_type, reward, discount]); default: random")
    act.add_argument("--batch", type=int, default=0, metavar="N",
                     help="random time steps: send a batch of N rows (default: one unbatched time step)")
    act.add_argument("--steps", type=int, default=1, metavar="N",
                     help="act N times, carrying the policy state (default: 1)")
    act.add_argument("--seed", type=int, default=None, help="seeds the random time steps (the same steps each run)")
    act.add_argument("--request-seed", type=int, default=None, metavar="SEED",
                     help="sends ActionRequest.seed (SEED, SEED+1, ... per step): a stochastic policy then "
                          "answers the same each run (SavedModel and graph backends refuse seeds)")
    verbs.add_parser("stats", parents=[common], help="serving statistics (every policy, or --policy)")
    pull = verbs.add_parser("pull", parents=[common], help="save a policy's variables to an .npz file (learner)")
    pull.add_argument("--output", "-o", required=True, metavar="FILE.npz")
    push = verbs.add_parser("push", parents=[common], help="send variables from an .npz file (learner)")
    push.add_argument("file", metavar="FILE.npz", help="one array per variable (as `pull` writes it)")
    push.add_argument("--version", type=int, required=True, help="the version (train step) they are")
    args = parser.parse_args(argv)
    if args.token is not None:
        parser.error("a token never goes on the command line (it shows in `ps` and in shell history): use "
                     f"--token-file PATH, ${security.TOKEN_ENV} or ${security.TOKEN_FILE_ENV}")
    return args


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("address", metavar="ADDRESS", help="host:port, unix:PATH, or grpc[s]://host:port/policy")
    common.add_argument("--policy", default="", help="the policy (default: the URI's, else the server's default)")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default: %(default)s)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    group = common.add_argument_group("security")
    group.add_argument("--token-file", metavar="PATH", help="a file holding the bearer token")
    group.add_argument("--token", help=argparse.SUPPRESS)  # refused: see parse_args
    group.add_argument("--tls", action="store_true", help="TLS with the system's root certificates")
    group.add_argument("--ca", metavar="PEM", help="TLS: the CA certificates the server's must chain to")
    group.add_argument("--cert", metavar="PEM", help="mTLS: the client certificate (with --key)")
    group.add_argument("--key", metavar="PEM", help="mTLS: the client certificate's key")
    group.add_argument("--server-name", metavar="NAME", help="TLS: the name the server's certificate holds")
    return common


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    verb: Callable[[argparse.Namespace], Any] = VERBS[args.verb]
    try:
        result = verb(args)
    except RemoteError as e:
        print(f"{PROG}: {e.code.name}: {e.details}", file=sys.stderr)
        for field, description in e.fields:
            if description != e.details:
                print(f"  {field}: {description}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    text = result.pop("_text")
    print(json.dumps(result, indent=2) if args.json else "\n".join(text))
    return 0


def _connect(args: argparse.Namespace, cls: type = PolicyClient, **kwargs: Any) -> Any:
    """A PolicyClient (or VariablePublisher) for the address, TLS and token options."""
    credentials, options = None, []
    if args.tls or args.ca or args.cert or args.key or args.server_name:
        if security.is_uri(args.address) and args.address.startswith("grpc://"):
            raise ValueError("grpc:// is plaintext: use grpcs:// (or a host:port address) with the TLS options")
        credentials = security.tls_credentials(args.ca, args.cert, args.key)
        if args.server_name:
            options.append(("grpc.ssl_target_name_override", args.server_name))
    return cls(args.address, args.policy, timeout=args.timeout, credentials=credentials, options=options,
               token_file=args.token_file, **kwargs)


def cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    with _connect(args, transport="unary", use_plans=False) as client:
        policies = client.list_policies()
    found = [{"name": p.name, "version": p.version, "backend": p.backend, "stateful": p.stateful}
             for p in policies]
    text = cli_format.table(["POLICY", "VERSION", "BACKEND", "STATEFUL"],
                            [[p["name"] + (" (default)" if i == 0 else ""), p["version"], p["backend"], p["stateful"]]
                             for i, p in enumerate(found)])
    return {"policies": found, "_text": text}


def cmd_specs(args: argparse.Namespace) -> dict[str, Any]:
    with _connect(args, transport="unary", use_plans=False) as client:
        specs, version = client.get_specs()
        name, backend = client.policy or _default_name(client), client.backend
    text = [f"policy {name!r} ({backend}, version {version})"]
    for field in ("time_step_spec", "action_spec", "policy_state_spec", "info_spec"):
        text += cli_format.format_specs(field, getattr(specs, field))
    return {"policy": name, "backend": backend, "version": version, "_text": text,
            **{field: _spec_json(getattr(specs, field))
               for field in ("time_step_spec", "action_spec", "policy_state_spec", "info_spec")}}


def _default_name(client: PolicyClient) -> str:
    policies = client.list_policies()
    return policies[0].name if policies else ""


def _spec_json(spec: Any) -> Any:
    def leaf(s: Any, _: str) -> dict[str, Any]:
        found = {"name": s.name, "dtype": cli_format.describe_dtype(s.dtype), "shape": list(s.shape)}
        if hasattr(s, "minimum") and hasattr(s, "maximum"):
            found.update(minimum=cli_values.to_json(np.asarray(s.minimum)),
                         maximum=cli_values.to_json(np.asarray(s.maximum)))
        return found
    return cli_values.to_json(cli_values.map_spec(leaf, spec))


def cmd_act(args: argparse.Namespace) -> dict[str, Any]:
    if args.steps < 1 or args.batch < 0:
        raise ValueError("--steps must be >= 1 and --batch >= 0")
    rng = np.random.default_rng(args.seed)
    with _connect(args, transport="unary", use_plans=False) as client:
        specs, _ = client.get_specs()
        client.set_plans(specs)
        if args.input:
            time_step, batch = cli_values.load_time_step(args.input, specs.time_step_spec)
        else:
            time_step, batch = None, args.batch
        state = client.get_initial_state(batch or None)
        answers, text = [], []
        for step in range(args.steps):
            sent = time_step if time_step is not None else cli_values.random_time_step(
                specs.time_step_spec, rng, (batch,) if batch else (), first=step == 0)
            seed = None if args.request_seed is None else args.request_seed + step
            result = client.action(sent, state, batch_size=batch, seed=seed)
            state = result.policy_step.state
            answers.append({"version": result.version, "observation": cli_values.to_json(sent.observation),
                            **{f: cli_values.to_json(getattr(result.policy_step, f))
                               for f in ("action", "state", "info")}})
            text += [f"step {step + 1} (version {result.version}{f', batch of {batch}' if batch else ''}):"]
            text += ["  " + line for line in cli_format.format_values("observation", sent.observation)]
            for field in ("action", "state", "info"):
                text += ["  " + line for line in cli_format.format_values(field, getattr(result.policy_step, field))]
    return {"steps": answers, "_text": text}


def cmd_stats(args: argparse.Namespace) -> dict[str, Any]:
    with _connect(args, transport="unary", use_plans=False) as client:
        stats = client.stats()
    columns = ("policy", "version", "requests", "rows", "batches", "mean_batch_size", "errors",
               "queue_wait_ms_p50", "queue_wait_ms_p99", "inference_ms_p50", "inference_ms_p99", "queue_depth")
    headers = ("POLICY", "VERSION", "REQUESTS", "ROWS", "BATCHES", "MEAN BATCH", "ERRORS", "WAIT P50 MS",
               "WAIT P99 MS", "INFER P50 MS", "INFER P99 MS", "QUEUED")
    return {"policies": stats, "_text": cli_format.table(headers, [[s[c] for c in columns] for s in stats])}


def cmd_pull(args: argparse.Namespace) -> dict[str, Any]:
    with _connect(args, VariablePublisher) as publisher:
        variables = publisher.variables()
    with _connect(args, transport="unary", use_plans=False) as client:
        version, values = client.variables()  # the values and their version in one answer
    for variable, value in zip(variables, values):
        variable["value"] = value
    keys = cli_values.save_variables(args.output, variables)
    text = [f"saved {len(variables)} variables (version {version}) to {args.output}"]
    text += cli_format.table(["KEY", "DTYPE", "SHAPE"], [[k, v["dtype"], v["shape"]] for k, v in zip(keys, variables)])
    return {"file": args.output, "version": version, "_text": text,
            "variables": [{"key": k, "name": v["name"], "dtype": str(v["dtype"]), "shape": list(v["shape"])}
                          for k, v in zip(keys, variables)]}


def cmd_push(args: argparse.Namespace) -> dict[str, Any]:
    with _connect(args, VariablePublisher) as publisher:
        values = cli_values.load_variables(args.file, publisher.variables())
        served = publisher.push(values, args.version)
    size = sum(v.nbytes for v in values)
    return {"file": args.file, "version": served, "variables": len(values), "bytes": size,
            "_text": [f"pushed {len(values)} variables ({size} bytes) from {args.file}; serving version {served}"]}


VERBS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "list": cmd_list, "specs": cmd_specs, "act": cmd_act, "stats": cmd_stats, "pull": cmd_pull, "push": cmd_push}
