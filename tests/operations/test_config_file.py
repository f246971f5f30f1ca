"""`policy-server --config FILE.toml`: several policies with their own batching, flags over the file, clear errors,
and the manual's example."""

from __future__ import annotations

import re
import secrets
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from policy_client import PolicyClient, RemoteError
from policy_server.cli import command as cli
from policy_server.cli import config_file
from policy_server.server import BackgroundServer
from tests.operations.processes import policy_server
from tests.support.fakes import echo_time_step
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(180)

ECHO = "tests.support.fakes:EchoBackend"
EXAMPLE = f"""
# Two policies with different batching, one following a checkpoint directory.
[server]
host = "127.0.0.1"
port = 0
stats_interval = 0
metrics_port = 0

[security]
tokens_file = "tokens"          # relative to this file's directory

[batching]                      # every policy's defaults
max_batch_size = 32
max_queue_size = 1000

[policies.small]                # the first policy is the default one
factory = "{ECHO}"
batching = {{ max_batch_size = 4 }}

[policies.large]
factory = "{ECHO}"
follow_checkpoints = "checkpoints"

[policies.large.batching]
max_batch_size = 64
max_batch_delay_ms = 1.5
allowed_batch_sizes = [8, 64]
"""


def write(tmp_path: Path, text: str, tokens: str | None = None) -> Path:
    path = tmp_path / "serving.toml"
    path.write_text(textwrap.dedent(text))
    if tokens is not None:
        (tmp_path / "tokens").write_text(tokens)
        (tmp_path / "tokens").chmod(0o600)
    return path


def build(*argv: str):
    """(policy name -> source, the ServerConfig) that `policy-server ARGV` serves."""
    config = cli.server_config(cli.parse_args(list(argv)))
    return {p.name: p.source for p in config.policies}, config


def followed(config, kind: str = "follow_checkpoints") -> dict:
    return {p.name: getattr(p, kind) for p in config.policies if getattr(p, kind)}


def rows(n: int):
    return echo_time_step(np.arange(3 * n, dtype=np.float32).reshape(n, 3), batch_size=n)


def test_two_policies_with_their_own_batching(tmp_path):
    path = write(tmp_path, EXAMPLE.replace('tokens_file = "tokens"', "").replace(
        'follow_checkpoints = "checkpoints"', ""))
    sources, config = build("--config", str(path))
    assert list(sources) == ["small", "large"]
    assert config.batching.max_batch_size == 32 and config.batching.max_queue_size == 1000
    assert config.policy("small").batching.max_batch_size == 4
    assert config.policy("small").batching.max_queue_size == 1000  # the rest comes from [batching]
    large = config.policy("large").batching
    assert (large.max_batch_size, large.max_batch_delay, large.allowed_batch_sizes) == (64, 0.0015, (8, 64))
    assert config.metrics_port == 0 and config.address == "127.0.0.1:0"
    with BackgroundServer(config=config) as server:
        registry = server.server.registry
        assert registry.get("small").scheduler.config.max_batch_size == 4
        assert registry.get("large").scheduler.config.max_batch_size == 64
        for name in ("small", "large"):
            with PolicyClient(server.address, name, timeout=WAIT, transport="unary") as client:
                state = {"count": np.zeros(10, np.int64)}
                step = client.action(rows(10), state, batch_size=10).policy_step
                np.testing.assert_array_equal(step.action, 2 * rows(10).observation)
        # Ten rows: split at 4 rows for "small", one batch (padded to 64) for "large".
        assert registry.get("small").backend.batch_sizes == [4, 4, 2]
        assert registry.get("large").backend.batch_sizes == [64]
        with PolicyClient(server.address, "", timeout=WAIT) as client:  # the first table is the default
            assert client.get_specs()[0] is not None and client.list_policies()[0].name == "small"


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, EXAMPLE, tokens=f"actor {secrets.token_urlsafe(24)}\n")
    sources, config = build("--config", str(path), "--max-batch-size", "16", "--port", "5", "--metrics-port", "9",
                            "--policy", "large=/models/large", "--follow-checkpoints", "large=/elsewhere")
    assert config.address == "127.0.0.1:5" and config.metrics_port == 9
    assert config.batching.max_batch_size == 16  # over [batching]
    assert config.policy("small").batching.max_batch_size == 4  # a policy's own batching stays
    assert sources["large"]() == "/models/large" and list(sources) == ["small", "large"]
    assert followed(config) == {"large": "/elsewhere"}
    assert config.auth is not None and config.auth.counts() == {"actor": 1}


def test_relative_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, EXAMPLE, tokens=f"learner {secrets.token_urlsafe(24)}\n")
    monkeypatch.chdir("/")
    args = cli.parse_args(["--config", str(path)])
    assert args.tokens_file == str(tmp_path / "tokens")
    assert args.file.policies["large"].follow_checkpoints == str(tmp_path / "checkpoints")
    text = EXAMPLE.replace('follow_checkpoints = "checkpoints"', 'follow_checkpoints = "gs://bucket/checkpoints"')
    args = cli.parse_args(["--config", str(write(tmp_path, text))])
    assert args.file.policies["large"].follow_checkpoints == "gs://bucket/checkpoints"


@pytest.mark.parametrize("text, match", [
    ("[server]\nprot = 1\n", r"\[server\] prot: unknown key"),
    ("[server]\nport = \"x\"\n", r"\[server\] port: expected an integer, got 'x'"),
    ("[security]\ntokens = \"actor abc\"\n", r"\[security\] tokens: secrets never go in the config file"),
    ("[policies.a]\nfactory = \"m:f\"\ntoken = \"abc\"\n", r"\[policies.a\] token: secrets never go"),
    ("[policies.a]\nfactory = \"m:f\"\nsaved_model = \"/x\"\n", r"\[policies.a\]: give exactly one of"),
    ("[policies.a]\nfollow_reverb = \"h:1\"\n", r"\[policies.a\]: give exactly one of"),
    ("[policies.a]\nfactory = \"m:f\"\nbatching = { max_batch_size = 0 }\n",
     r"\[policies.a\] batching: max_batch_size must be >= 1"),
    ("[batching]\nallowed_batch_sizes = [1, \"x\"]\n", r"\[batching\] allowed_batch_sizes: expected a list"),
    ("[server\n", r"not valid TOML"),
    ("[extra]\n", r"extra: unknown key"),
])
def test_bad_files_are_clear_errors(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(SystemExit, match=match):
        build("--config", str(path))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match=r"policy-server: --config cannot read .*missing.toml.*No such file"):
        cli.parse_args(["--config", str(tmp_path / "missing.toml")])


def test_a_config_file_server_as_a_process(tmp_path):
    actor = secrets.token_urlsafe(24)
    text = EXAMPLE.replace('follow_checkpoints = "checkpoints"', "")
    path = write(tmp_path, text, tokens=f"actor {actor}\n")
    with policy_server(["--config", str(path)], tmp_path, port=False) as server:
        listening = server.wait_for(r"listening on (\S+) \(loading policies\); metrics on (\S+)$")
        ready = server.wait_for(r"policy-server serving (.*) on (\S+)$")
        assert ready.group(1) == "small, large" and listening.group(2).startswith("http://127.0.0.1:")
        with PolicyClient(ready.group(2), "large", timeout=WAIT, token=actor) as client:
            assert client.action(echo_time_step([1, 2, 3]), {"count": np.array(0, np.int64)}).version == 0
        with pytest.raises(RemoteError, match="UNAUTHENTICATED"):
            PolicyClient(ready.group(2), "large", timeout=WAIT, token="").list_policies()
        assert server.stop() == 0
    assert "tokens for actor: 1" in server.stderr and actor not in server.stderr


def docs_section(page: str, title: str) -> str:
    """The text of docs/PAGE's `## title` section (up to the next `## ` heading)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / page).read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def test_the_manuals_example_is_a_valid_config(tmp_path, monkeypatch):
    section = docs_section("operations.md", "Several policies, one config file")
    (example,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    document = tomllib.loads(example)
    path = tmp_path / "serving.toml"
    parsed = config_file.parse(document, str(path))
    assert list(parsed.policies) == ["collect", "scripted"]
    path.write_text(example)
    # The settings it implies, as `policy-server --config serving.toml` builds them; the files it names
    # (certificates, tokens) do not exist here, so security is left out, and no policy is loaded.
    monkeypatch.chdir("/")
    args = cli.parse_args(["--config", str(path)])
    assert (args.tls_cert, args.tls_key) == (str(tmp_path / "certs/server.pem"), str(tmp_path / "certs/server.key"))
    assert args.tokens_file == "/run/secrets/policy-tokens" and args.log_format == "json"
    config = cli.server_config(args, secured=(None, None))
    sources = {p.name: p.source for p in config.policies}
    assert list(sources) == ["collect", "scripted"]
    assert sources["collect"]() == "/models/root/policies/collect_policy"  # a SavedModel path, loaded later
    assert config.address == "0.0.0.0:50051" and config.metrics_port == 9090 and config.reflection is False
    assert config.batching.max_batch_size == 64
    collect, scripted = config.policy("collect").batching, config.policy("scripted").batching
    assert (collect.max_batch_size, collect.max_batch_delay) == (256, 0.001)
    assert (scripted.max_batch_size, scripted.target_latency) == (8, 0.005)
    assert followed(config) == {"collect": "/models/root/policies/checkpoints"}
    assert followed(config, "follow_reverb") == {}


def test_the_manual_lists_every_key():
    section = docs_section("operations.md", "Several policies, one config file")
    for key in (*config_file.SERVER_KEYS, *config_file.SECURITY_KEYS, *config_file.POLICY_KEYS):
        assert f"`{key}`" in section, key
