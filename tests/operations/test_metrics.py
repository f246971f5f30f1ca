"""Prometheus metrics: scraped from a real server's endpoint under load, refusals and failures, one registry each."""

from __future__ import annotations

import secrets
import concurrent.futures
import threading
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from policy_client import PolicyClient, RemoteError, VariablePublisher
from policy_server.config import BatchingConfig
from policy_server.security import TokenAuth
from tests.support.fakes import EchoBackend, FailingBackend, echo_time_step
from tests.support.servers import WAIT, wait_until

pytestmark = pytest.mark.timeout(120)

ACTORS, ACTIONS = 4, 150


def state(count: int = 0) -> dict:
    return {"count": np.array(count, np.int64)}


def scrape(server) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from GET /metrics."""
    with urllib.request.urlopen(server.server.metrics_url, timeout=WAIT) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(v for (n, found), v in samples.items() if n == name and set(labels.items()) <= set(found))


def families(server) -> dict[str, str]:
    with urllib.request.urlopen(server.server.metrics_url, timeout=WAIT) as answer:
        return {f.name: f.type for f in text_string_to_metric_families(answer.read().decode())}


@pytest.fixture
def metered(servers):
    return servers.serve({"echo": EchoBackend(delay=0.001), "failing": FailingBackend()}, metrics_port=0,
                         batching=BatchingConfig(max_batch_size=16))


def load(server, actors: int = ACTORS, actions: int = ACTIONS, *, started: threading.Event | None = None) -> None:
    """`actors` threads, each with its own client (stream), `actions` actions each."""
    errors: list[BaseException] = []

    def actor(seed: int) -> None:
        try:
            with PolicyClient(server.address, "echo", timeout=WAIT, data_plane="grpc") as client:
                for i in range(actions):
                    client.action(echo_time_step(np.full(3, seed + i, np.float32)), state())
                    if started is not None and i == actions // 3:
                        started.set()
        except BaseException as e:  # pylint: disable=broad-except
            errors.append(e)

    threads = [threading.Thread(target=actor, args=(100 * n,)) for n in range(actors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not errors, errors


def test_the_figures_move_under_load(metered):
    before = scrape(metered)
    started = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the load's own assertions reach the test
        runner = pool.submit(load, metered, started=started)
        assert started.wait(WAIT)
        during = scrape(metered)  # while the actors act
        runner.result(WAIT * 4)
    after = scrape(metered)
    total = ACTORS * ACTIONS
    ok = {"policy": "echo", "method": "ActionStream", "code": "OK"}
    assert value(before, "tfa_policy_requests_total", **ok) == 0
    assert 0 < value(during, "tfa_policy_requests_total", **ok) < total
    assert value(after, "tfa_policy_requests_total", **ok) == total
    # Histograms: every request waited once and was answered once; batches hold every row.
    assert value(after, "tfa_policy_queue_wait_seconds_count", policy="echo") == total
    assert value(after, "tfa_policy_request_duration_seconds_count", policy="echo", method="ActionStream") == total
    assert value(after, "tfa_policy_batch_size_rows_sum", policy="echo") == total
    batches = value(after, "tfa_policy_batch_size_rows_count", policy="echo")
    assert batches == value(after, "tfa_policy_inference_duration_seconds_count", policy="echo")
    assert 0 < batches < total, "four actors on a 1 ms policy: some batches hold several rows"
    assert value(after, "tfa_policy_inference_duration_seconds_sum", policy="echo") >= batches * 0.001
    assert value(after, "tfa_policy_batch_size_rows_bucket", policy="echo", le="+Inf") == batches
    # The same figures as GetStats.
    with PolicyClient(metered.address, "echo", timeout=WAIT) as client:
        stats = client.stats()[0]
    assert stats["requests"] == total and stats["batches"] == batches
    # Scrape-time gauges.
    assert value(after, "tfa_policy_queued_requests", policy="echo") == 0
    assert value(after, "tfa_policy_loaded", policy="echo") == value(after, "tfa_policy_loaded", policy="failing") == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_names_types_and_labels_follow_prometheus_conventions(metered):
    load(metered, actors=1, actions=3)
    found = families(metered)
    expected = {"tfa_policy_requests": "counter", "tfa_policy_rejected_requests": "counter",
                "tfa_policy_failed_requests": "counter", "tfa_policy_request_duration_seconds": "histogram",
                "tfa_policy_batch_size_rows": "histogram", "tfa_policy_queue_wait_seconds": "histogram",
                "tfa_policy_inference_duration_seconds": "histogram", "tfa_policy_queued_requests": "gauge",
                "tfa_policy_version": "gauge", "tfa_policy_loaded": "gauge",
                "tfa_policy_weight_updates": "counter"}
    assert {name: found.get(name) for name in expected} == expected


def test_versions_and_weight_updates(metered):
    assert value(scrape(metered), "tfa_policy_version", policy="echo") == 0
    with VariablePublisher(metered.address, "echo", timeout=WAIT) as publisher:
        publisher.push([np.float32(1)], 5)
        publisher.push([np.float32(2)], 9)
        with pytest.raises(RemoteError):
            publisher.push([np.float32(3)], 4)  # older than the served version: refused
    # gRPC sends an aborted call's status before the interceptor around the handler counts it.
    wait_until(lambda: value(scrape(metered), "tfa_policy_rejected_requests_total", policy="echo",
                             method="PushVariables", code="FAILED_PRECONDITION") == 1, "the refused push counted")
    samples = scrape(metered)
    assert value(samples, "tfa_policy_version", policy="echo") == 9
    assert value(samples, "tfa_policy_weight_updates_total", policy="echo", source="push") == 2
    assert value(samples, "tfa_policy_weight_updates_total", policy="echo", source="checkpoint") == 0
    assert value(samples, "tfa_policy_requests_total", policy="echo", method="PushVariables", code="OK") == 2
    assert value(samples, "tfa_policy_rejected_requests_total", policy="echo", method="PushVariables",
                 code="FAILED_PRECONDITION") == 1


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_rejected_and_failed_requests(servers, metered, transport):
    client = servers.client(metered.address, "echo", transport=transport)
    with pytest.raises(ValueError):
        client.action(echo_time_step(np.zeros(2, np.float32)), state())  # wrong shape: INVALID_ARGUMENT
    failing = servers.client(metered.address, "failing", transport=transport)
    with pytest.raises(RemoteError) as info:
        failing.action(echo_time_step(np.full(3, np.nan, np.float32)), state())  # the policy raises
    assert info.value.code == grpc.StatusCode.INTERNAL
    unknown = servers.client(metered.address, f"nope-{secrets.token_hex(4)}", transport="unary")
    with pytest.raises(LookupError):
        unknown.action(echo_time_step(np.zeros(3, np.float32)), state())
    method = "Action" if transport == "unary" else "ActionStream"
    # A stream message is counted as its answer goes out, and an aborted unary call as its handler
    # ends, which gRPC does after sending the status: either may come just after the caller has it.
    wait_until(lambda: value(scrape(metered), "tfa_policy_failed_requests_total", policy="failing", method=method,
                             code="INTERNAL") == 1, "the failed call counted")
    wait_until(lambda: value(scrape(metered), "tfa_policy_rejected_requests_total", policy="<unknown>",
                             code="NOT_FOUND") == 1, "the unknown policy's call counted")
    wait_until(lambda: value(scrape(metered), "tfa_policy_rejected_requests_total", policy="echo", method=method,
                             code="INVALID_ARGUMENT") == 1, "the invalid call counted")
    samples = scrape(metered)
    assert value(samples, "tfa_policy_rejected_requests_total", policy="echo", method=method,
                 code="INVALID_ARGUMENT") == 1
    assert value(samples, "tfa_policy_failed_requests_total", policy="failing", method=method, code="INTERNAL") == 1
    # A name the server does not host counts under one label, whatever the name.
    assert value(samples, "tfa_policy_rejected_requests_total", policy="<unknown>", code="NOT_FOUND") == 1
    assert not [labels for (name, labels) in samples if dict(labels).get("policy", "").startswith("nope-")]


def test_the_default_policy_is_counted_under_its_name_and_server_wide_calls_under_none(servers, metered):
    client = servers.client(metered.address, "", transport="unary")
    client.action(echo_time_step(np.zeros(3, np.float32)), state())
    client.list_policies()
    client.stats()
    samples = scrape(metered)
    assert value(samples, "tfa_policy_requests_total", policy="echo", method="Action", code="OK") == 1
    assert value(samples, "tfa_policy_requests_total", policy="", method="ListPolicies", code="OK") == 1
    assert value(samples, "tfa_policy_requests_total", policy="", method="GetStats", code="OK") == 1


def test_calls_the_token_check_refuses_are_counted(servers):
    actor = secrets.token_urlsafe(24)
    server = servers.serve({"echo": EchoBackend()}, metrics_port=0, auth=TokenAuth({"actor": actor}))
    for transport in ("unary", "stream"):
        with pytest.raises(RemoteError) as info:
            servers.client(server.address, "echo", transport=transport, token="").action(
                echo_time_step(np.zeros(3, np.float32)), state())
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    client = servers.client(server.address, "echo", token=actor, transport="unary")
    client.action(echo_time_step(np.zeros(3, np.float32)), state())
    wait_until(lambda: value(scrape(server), "tfa_policy_rejected_requests_total", method="ActionStream",
                             code="UNAUTHENTICATED") >= 1, "the refused stream counted")
    samples = scrape(server)
    assert value(samples, "tfa_policy_rejected_requests_total", method="Action", code="UNAUTHENTICATED") == 1
    assert value(samples, "tfa_policy_rejected_requests_total", method="ActionStream", code="UNAUTHENTICATED") >= 1
    assert value(samples, "tfa_policy_requests_total", policy="echo", method="Action", code="OK") == 1


def test_several_servers_in_one_process_keep_their_own_metrics(servers):
    first = servers.serve({"a": EchoBackend()}, metrics_port=0)
    second = servers.serve({"b": EchoBackend()}, metrics_port=0)
    assert first.server.metrics_url != second.server.metrics_url
    servers.client(first.address, "a", transport="unary").action(echo_time_step(np.zeros(3, np.float32)), state())
    one, two = scrape(first), scrape(second)
    assert value(one, "tfa_policy_requests_total", policy="a", method="Action") == 1
    assert value(two, "tfa_policy_requests_total", method="Action") == 0
    assert value(two, "tfa_policy_loaded", policy="b") == 1 and value(two, "tfa_policy_loaded", policy="a") == 0


def test_no_metrics_port_no_endpoint_and_no_interceptor(servers):
    server = servers.serve({"echo": EchoBackend()})
    assert server.server.metrics is None and server.server.metrics_url is None


def test_a_metrics_port_in_use_is_a_clear_error(servers):
    first = servers.serve({"a": EchoBackend()}, metrics_port=0)
    with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{first.server.metrics.port}"):
        servers.serve({"b": EchoBackend()}, metrics_port=first.server.metrics.port)
