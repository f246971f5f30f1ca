"""`policy-server --config FILE.toml`: the server's settings and its policies, one table per entity.

    [server]                      # ServerConfig, by the flags' names
    port = 50051
    metrics_port = 9090
    reflection = false            # --no-reflection

    [security]                    # files only: a token never goes in this file
    tls_cert = "server.pem"
    tls_key = "server.key"
    tokens_file = "tokens"

    [batching]                    # ServerConfig.batching: the defaults of every policy
    max_batch_size = 64

    [policies.collect]            # a PolicyConfig; the first policy is the default one
    saved_model = "policies/collect_policy"
    follow_checkpoints = "policies/checkpoints"
    batching = { max_batch_size = 256, max_batch_delay_ms = 1 }
    max_sessions = 256

    [policies.greedy]
    factory = "mypackage.policies:greedy"

Each table maps onto one object: `[server]`, `[security]` and `[batching]`
onto ServerConfig (and the flags of the same names), each
`[policies.NAME]` onto the PolicyConfig of NAME (its source, `batching`,
`follow_checkpoints`, `follow_reverb`, `reverb_table`, `max_sessions`,
`session_idle_timeout`; a setting it leaves out takes the server's). A flag
given on the command line overrides the file's setting of the same name:
`--port` its `[server] port`, `--max-batch-size` its `[batching]` (not a
policy's own `batching`), `--policy NAME=DIR` the source of policy NAME,
`--follow-checkpoints NAME=DIR` what NAME follows. Relative paths are
relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any, Mapping

# key -> (type, whether it is a local path). Types: int, float, str, bool, "sizes" (list of ints).
SERVER_KEYS: dict[str, tuple[Any, bool]] = {
    "host": (str, False), "port": (int, False), "address": (str, False), "max_message_mb": (int, False),
    "stats_interval": (float, False), "follow_interval": (float, False), "reverb_table": (str, False),
    "metrics_port": (int, False), "metrics_host": (str, False), "log_level": (str, False),
    "log_format": (str, False), "demo": (bool, False), "max_sessions": (int, False),
    "session_idle_timeout": (float, False), "shared_memory": (bool, False), "workers": (int, False),
    "reflection": (bool, False), "stream_acks": (str, False),
}
SECURITY_KEYS = {"tls_cert": (str, True), "tls_key": (str, True), "tls_client_ca": (str, True),
                 "tokens_file": (str, True)}
BATCHING_KEYS: dict[str, tuple[Any, bool]] = {
    "max_batch_size": (int, False), "max_batch_delay_ms": (float, False), "max_queue_size": (int, False),
    "allowed_batch_sizes": ("sizes", False), "min_batch_size": (int, False),
    "min_batch_timeout_ms": (float, False), "target_latency_ms": (float, False),
}
POLICY_KEYS = {"saved_model": (str, True), "factory": (str, False), "follow_checkpoints": (str, True),
               "follow_reverb": (str, False), "reverb_table": (str, False), "max_sessions": (int, False),
               "session_idle_timeout": (float, False)}
# BatchingConfig field and scale of each batching key.
BATCHING_FIELDS = {"max_batch_size": ("max_batch_size", None), "max_batch_delay_ms": ("max_batch_delay", 1e-3),
                   "max_queue_size": ("max_queue_size", None), "allowed_batch_sizes": ("allowed_batch_sizes", None),
                   "min_batch_size": ("min_batch_size", None), "min_batch_timeout_ms": ("min_batch_timeout", 1e-3),
                   "target_latency_ms": ("target_latency", 1e-3)}
_SECRETS = ("token", "tokens", "secret", "password")


@dataclasses.dataclass(frozen=True)
class PolicyEntry:
    """One `[policies.NAME]` table (a PolicyConfig, its source named by `saved_model` or `factory`)."""

    name: str
    saved_model: str | None = None
    factory: str | None = None
    follow_checkpoints: str | None = None
    follow_reverb: str | None = None
    reverb_table: str | None = None
    max_sessions: int | None = None
    session_idle_timeout: float | None = None
    batching: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # BATCHING_KEYS -> value


@dataclasses.dataclass(frozen=True)
class FileConfig:
    """A config file, read and checked.

    Attributes:
      path: where it was read from.
      settings: flag destination (e.g. "max_batch_size", "tls_cert") -> value,
        from [server], [security] and [batching]; the flags' defaults.
      policies: name -> its table, in the file's order.
    """

    path: str
    settings: Mapping[str, Any]
    policies: Mapping[str, PolicyEntry]


def load(path: str | os.PathLike) -> FileConfig:
    """Reads and checks a config file.

    Raises:
      ValueError: the file cannot be read or parsed, or holds an unknown key,
        a value of the wrong type, a policy with no source or two, or a secret.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    return parse(document, path)


def parse(document: Mapping[str, Any], path: str) -> FileConfig:
    """Checks a parsed config file (see `load`); relative paths become relative to `path`'s directory."""
    reader = _Reader(path)
    reader.keys(document, {"server", "security", "batching", "policies"}, "")
    settings: dict[str, Any] = {}
    for table, keys in (("server", SERVER_KEYS), ("security", SECURITY_KEYS), ("batching", BATCHING_KEYS)):
        settings.update(reader.table(document.get(table, {}), keys, f"[{table}]"))
    if "allowed_batch_sizes" in settings:  # the flag's form
        settings["allowed_batch_sizes"] = ",".join(str(n) for n in settings["allowed_batch_sizes"])
    policies = reader.mapping(document.get("policies", {}), "[policies]")
    return FileConfig(path, settings, {name: reader.policy(name, table) for name, table in policies.items()})


def batching_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """BatchingConfig keyword arguments of a `batching` table (milliseconds become seconds)."""
    fields = {}
    for key, value in values.items():
        field, scale = BATCHING_FIELDS[key]
        fields[field] = tuple(value) if key == "allowed_batch_sizes" else value * scale if scale else value
    return fields


class _Reader:
    """Checks tables against their keys, naming the file and the key in every error."""

    def __init__(self, path: str):
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))

    def fail(self, where: str, message: str) -> ValueError:
        return ValueError(f"{self.path}: {where}: {message}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a table, got {type(value).__name__}")
        return value

    def keys(self, table: Mapping[str, Any], allowed: set[str] | Mapping[str, Any], where: str) -> None:
        for key in table:
            if key.lower() in _SECRETS:
                raise self.fail(f"{where} {key}".strip(), "secrets never go in the config file (it is read "
                                "by many, and copied); name a file that holds them: tokens_file = \"PATH\"")
            if key not in allowed:
                raise self.fail(f"{where} {key}".strip(), f"unknown key; expected one of {', '.join(sorted(allowed))}")

    def table(self, value: Any, keys: Mapping[str, tuple[Any, bool]], where: str) -> dict[str, Any]:
        table = self.mapping(value, where)
        self.keys(table, keys, where)
        return {key: self.value(table[key], *keys[key], f"{where} {key}") for key in table}

    def value(self, value: Any, kind: Any, is_path: bool, where: str) -> Any:
        if kind == "sizes":
            if isinstance(value, str):  # the flag's form, "1,8,32"
                try:
                    value = [int(s) for s in value.split(",") if s.strip()]
                except ValueError:
                    value = None
            if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
                raise self.fail(where, "expected a list of integers, e.g. [1, 8, 32]")
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(where, f"expected {_NAMES[kind]}, got {value!r}")
        return self.resolve(value) if is_path else value

    def resolve(self, path: str) -> str:
        """A relative local path, relative to the file's directory (URLs such as gs://... stay)."""
        if "://" in path or os.path.isabs(os.path.expanduser(path)):
            return os.path.expanduser(path)
        return os.path.join(self.directory, path)

    def policy(self, name: str, value: Any) -> PolicyEntry:
        where = f"[policies.{name}]"
        table = dict(self.mapping(value, where))
        if not name:
            raise self.fail(where, "a policy needs a name")
        batching = self.table(table.pop("batching", {}), BATCHING_KEYS, f"{where} batching")
        entry = self.table(table, POLICY_KEYS, where)
        if ("saved_model" in entry) == ("factory" in entry):
            raise self.fail(where, "give exactly one of saved_model = \"DIR\" and factory = \"MODULE:CALLABLE\"")
        return PolicyEntry(name, batching=batching, **entry)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
