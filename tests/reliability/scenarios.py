"""The fault scenarios against subprocess servers; each returns its figures as a plain dict.

- `restarts`: SIGKILL or SIGTERM the server N times under RemotePolicy actors
  (half stream, half unary) and restart it on the same port.
- `overload`: an open-loop load at k x the measured capacity against a small
  queue.
- `large_messages`: the biggest batch served, the message-size refusal, and
  the other actors' latency meanwhile.
- `idle_streams`: idle streams and a client that never reads, with the other
  actors' latency before and during.

Every run is bounded (counts, seconds, the calls' deadlines) and kills its
server in a `finally`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
import traceback
import urllib.request
from typing import Any, Callable, Sequence

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from policy_client import PolicyClient
from policy_client.wire import errors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from tests.reliability.actors import Actors, Tally, percentile_ms
from tests.reliability.backends import DELAY_ENV, VERSION_ENV
from tests.reliability.clients import echo_request, time_step
from tests.reliability.procs import HelperProcess, ServerProcess, free_port

ECHO = "echo=tests.reliability.backends:echo"
STATELESS = "stateless=tests.reliability.backends:stateless_echo"
ACTION = "/tfa_policy_grpc.v1.PolicyService/Action"
MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much each scenario does (the full run's values; `quick()` for a short run)."""

    restarts: int = 5
    actors: int = 8
    steady: float = 2.0  # seconds of normal traffic before and after each fault
    call_timeout: float = 30.0  # each actor call's deadline
    overload_factor: float = 10.0
    overload_seconds: float = 5.0
    overload_queue: int = 32
    big_rows: int = 1_000_000
    idle_streams: int = 200
    window: float = 3.0  # seconds of each latency measurement window
    fuzz_mutations: int = 88_000  # messages
    fuzz_hypothesis: int = 12_000  # examples (a push example is 1 to 5 messages)

    @classmethod
    def quick(cls) -> "Plan":
        return cls(restarts=1, actors=4, steady=1.0, overload_seconds=2.0, big_rows=200_000, idle_streams=50,
                   window=1.5, fuzz_mutations=3_000, fuzz_hypothesis=600)


def stream_consumer_threads() -> int:
    """Threads inside gRPC's request-iterator consumer (one per live client stream of this process)."""
    frames = sys._current_frames()  # pylint: disable=protected-access
    return sum(1 for frame in frames.values()
               if any(f.name == "consume_request_iterator" for f in traceback.extract_stack(frame)))


class RssSampler(threading.Thread):
    """Samples a server's RSS every `interval` seconds until stopped; `peak` is the highest seen."""

    def __init__(self, server: ServerProcess, interval: float = 0.05):
        super().__init__(name="rss-sampler", daemon=True)
        self.server, self.interval = server, interval
        self.peak = server.rss()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, self.server.rss())

    def __enter__(self) -> "RssSampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self.join(5)


def _tally_figures(tally: Tally) -> dict[str, Any]:
    return {"calls": tally.calls, "ok": tally.ok, "failed": tally.failed, "lost": tally.lost,
            "duplicated": tally.duplicated, "crossed": tally.crossed,
            "longest_pause_s": round(tally.longest_pause, 3), "errors": dict(tally.errors),
            "samples": tally.samples[:5]}


def _transports(n: int) -> list[str]:
    return [("stream", "unary", "shm")[i % 3] for i in range(n)]


# ----------------------------------------------------------------- restarts


def restarts(mode: str, plan: Plan = Plan(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """SIGKILL (mode "kill") or SIGTERM ("term") + restart on the same port, `plan.restarts` times.

    Each server generation serves version = generation, so answers say who made them.
    """
    assert mode in ("kill", "term")
    server = ServerProcess([ECHO], env={VERSION_ENV: "1"})
    actors = None
    outages = []
    try:
        server.start()
        before = stream_consumer_threads()
        actors = Actors(server.address, _transports(plan.actors), timeout=plan.call_timeout).start()
        actors.wait_for_version(1, plan.call_timeout)
        time.sleep(plan.steady)
        for k in range(plan.restarts):
            down = time.monotonic()
            code = server.kill() if mode == "kill" else server.terminate(plan.call_timeout)
            stopped = time.monotonic() - down
            started = server.start(env={VERSION_ENV: str(k + 2)})
            back = actors.wait_for_version(k + 2, plan.call_timeout)
            outages.append({"stop_s": round(stopped, 2), "start_s": round(started, 2), "exit_code": code,
                            "every_actor_back": back})
            log(f"  {mode} {k + 1}/{plan.restarts}: stopped in {stopped:.2f}s, serving again after "
                f"{started:.2f}s, every actor answered by the new server: {back}")
            time.sleep(plan.steady)
        tally = actors.finish()
        time.sleep(0.5)
        leaked = stream_consumer_threads() - before
    finally:
        if actors is not None and not actors.stop.is_set():
            actors.finish()
        server.close()
    longest_outage = max(o["stop_s"] + o["start_s"] for o in outages)
    return {"mode": mode, "restarts": plan.restarts, "actors": plan.actors, "call_timeout_s": plan.call_timeout,
            **_tally_figures(tally), "answers_by_version": dict(sorted(tally.versions.items())),
            "longest_outage_s": round(longest_outage, 2),
            "within_deadline": longest_outage < plan.call_timeout and all(o["every_actor_back"] for o in outages),
            "outages": outages, "leaked_stream_threads": leaked}


# ----------------------------------------------------------------- overload


def overload(plan: Plan = Plan(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Open-loop load at plan.overload_factor x capacity against a queue of plan.overload_queue requests.

    The policy sleeps 20 ms per batch of at most 2 rows, so capacity is about
    100 requests/s; it is measured first (closed loop, as many in flight as
    the queue holds).
    """
    metrics_port = free_port()
    server = ServerProcess([STATELESS], args=["--max-batch-size", "2", "--max-queue-size", str(plan.overload_queue),
                                              "--metrics-port", str(metrics_port)], env={DELAY_ENV: "20"})
    channel = None
    try:
        server.start()
        channel = grpc.insecure_channel(server.address)
        call = channel.unary_unary(ACTION, response_deserializer=service_pb.ActionResponse.FromString)

        def request(i: int) -> tuple[bytes, np.ndarray]:
            obs = np.array([i, 1, 2], np.float32)
            return echo_request("stateless", obs, request_id=i + 1).SerializeToString(), obs

        probe, probe_obs = request(0)
        for _ in range(10):
            call(probe, timeout=plan.call_timeout)
        baseline = []
        for _ in range(20):
            started = time.monotonic()
            call(probe, timeout=plan.call_timeout)
            baseline.append(time.monotonic() - started)
        capacity = _capacity(call, probe, in_flight=plan.overload_queue, seconds=2.0, timeout=plan.call_timeout)
        rate = plan.overload_factor * capacity
        count = int(rate * plan.overload_seconds)
        requests = [request(i) for i in range(count)]
        rss_before = server.rss()
        log(f"  capacity {capacity:.0f} requests/s; offering {rate:.0f}/s for {plan.overload_seconds:.0f}s "
            f"({count} requests) to a queue of {plan.overload_queue}")
        sent, done_at = [], {}
        with RssSampler(server) as rss:
            t0 = time.monotonic()
            for i, (data, _) in enumerate(requests):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                future = call.future(data, timeout=plan.call_timeout)
                future.add_done_callback(lambda f, i=i: done_at.setdefault(i, time.monotonic()))
                sent.append(future)
            offered_for = time.monotonic() - t0
            end = time.monotonic()
            outcomes = [_outcome(f, plan.call_timeout + 10) for f in sent]
            recovery = _recovery(call, probe, probe_obs, float(np.median(baseline)), end, plan.call_timeout)
            rss_peak = rss.peak
        refusal = refusal_quantiles(metrics_port, "Action", "RESOURCE_EXHAUSTED", (0.5, 0.99))
        codes: dict[str, int] = {}
        wrong = 0
        for (data, obs), (code, answer) in zip(requests, outcomes):
            codes[code] = codes.get(code, 0) + 1
            if code == "OK" and not np.array_equal(_action(answer), 2 * obs):
                wrong += 1
        sent_at = [t0 + j / rate for j in range(count)]
        first_rejected = [done_at[i] - t0 for i, (code, _) in enumerate(outcomes)
                          if code == "RESOURCE_EXHAUSTED" and i in done_at]
        rejected = [done_at[i] - sent_at[i] for i, (code, _) in enumerate(outcomes)
                    if code == "RESOURCE_EXHAUSTED" and i in done_at]
        accepted = [done_at[i] - sent_at[i] for i, (code, _) in enumerate(outcomes) if code == "OK" and i in done_at]
        return {"capacity_per_s": round(capacity, 1), "offered_per_s": round(count / offered_for, 1),
                "factor": plan.overload_factor, "queue": plan.overload_queue, "requests": count, "codes": codes,
                "wrong_answers": wrong, "hangs": codes.get("DEADLINE_EXCEEDED", 0) + codes.get("NO_ANSWER", 0),
                "time_to_first_rejection_ms": round(min(first_rejected) * 1e3, 1) if first_rejected else None,
                "rejection_p50_ms": percentile_ms(rejected, 50), "rejection_p99_ms": percentile_ms(rejected, 99),
                "server_rejection_p50_ms": refusal[0], "server_rejection_p99_ms": refusal[1],
                "accepted_p50_ms": percentile_ms(accepted, 50), "accepted_p99_ms": percentile_ms(accepted, 99),
                "baseline_p50_ms": percentile_ms(baseline, 50),
                "recovery_s": None if recovery is None else round(recovery, 3),
                "rss_before_mb": round(rss_before / MB, 1), "rss_ceiling_mb": round(rss_peak / MB, 1),
                "rss_after_mb": round(server.rss() / MB, 1), "server_alive": server.alive}
    finally:
        if channel is not None:
            channel.close()
        server.close()


def refusal_quantiles(port: int, method: str, code: str, quantiles: Sequence[float]) -> list[float | None]:
    """Quantiles (ms) of the server's refusal time of `method` with `code`, from its Prometheus histogram
    (tfa_policy_refusal_duration_seconds), interpolated within buckets as PromQL's histogram_quantile."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "tfa_policy_refusal_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("method") == method and \
                    sample.labels.get("code") == code:
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return [None] * len(quantiles)
    total, out = buckets[bounds[-1]], []
    for q in quantiles:
        rank, lower, below = q * total, 0.0, 0.0
        for le in bounds:
            if buckets[le] >= rank:
                if math.isinf(le):
                    out.append(round(lower * 1e3, 3))
                else:
                    share = (rank - below) / max(buckets[le] - below, 1e-12)
                    out.append(round((lower + (le - lower) * share) * 1e3, 3))
                break
            lower, below = le, buckets[le]
    return out


def _action(answer: service_pb.ActionResponse) -> np.ndarray:
    tensor = answer.policy_step.action.tensor
    return np.frombuffer(tensor.content, np.float32).reshape(tuple(tensor.shape))


def _outcome(future: grpc.Future, timeout: float) -> tuple[str, Any]:
    try:
        return "OK", future.result(timeout=timeout)
    except grpc.FutureTimeoutError:
        future.cancel()
        return "NO_ANSWER", None
    except grpc.RpcError as e:
        return e.code().name, None


def _capacity(call: Any, data: bytes, *, in_flight: int, seconds: float, timeout: float) -> float:
    """Answers per second with `in_flight` calls kept outstanding (closed loop)."""
    done = [0]
    lock = threading.Condition()
    end = time.monotonic() + seconds

    def refill(_future=None) -> None:
        with lock:
            if _future is not None:
                done[0] += 1
            lock.notify()

    started = time.monotonic()
    outstanding = []
    for _ in range(in_flight):
        f = call.future(data, timeout=timeout)
        f.add_done_callback(refill)
        outstanding.append(f)
    while time.monotonic() < end:
        with lock:
            lock.wait(0.05)
        live = [f for f in outstanding if not f.done()]
        for _ in range(in_flight - len(live)):
            f = call.future(data, timeout=timeout)
            f.add_done_callback(refill)
            live.append(f)
        outstanding = live
    for f in outstanding:
        _outcome(f, timeout)
    return done[0] / (time.monotonic() - started)


def _recovery(call: Any, data: bytes, obs: np.ndarray, baseline: float, since: float, timeout: float) -> float | None:
    """Seconds from `since` until a probe is answered right within 2x the baseline latency (None: not in `timeout`)."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            answer = call(data, timeout=timeout)
        except grpc.RpcError:
            time.sleep(0.01)
            continue
        if time.monotonic() - started <= 2 * baseline + 0.005 and np.array_equal(_action(answer), 2 * obs):
            return time.monotonic() - since
        time.sleep(0.01)
    return None


# ----------------------------------------------------------------- large messages


def large_messages(plan: Plan = Plan(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """A plan.big_rows-row request, the biggest batch under the 64 MiB limit, one over it; others' latency."""
    server = ServerProcess([ECHO])
    actors = None
    try:
        server.start()
        actors = Actors(server.address, _transports(4), timeout=plan.call_timeout).start()
        actors.wait_for_version(0, plan.call_timeout)
        time.sleep(plan.window)
        window_end = time.monotonic()
        rss_before = server.rss()
        # Unary: a refusal of the big message is its own call's (on a shared stream see the known defect).
        big = PolicyClient(server.address, "echo", transport="unary", timeout=120,
                           options=[("grpc.max_send_message_length", 256 * MB),
                                    ("grpc.max_receive_message_length", 256 * MB)])
        results = {}
        with RssSampler(server) as rss:
            # Rows per request byte: 32 (step type, reward, discount, 3 floats, the int64 count).
            ladder = sorted({plan.big_rows, 2_000_000, 2_200_000}) if plan.big_rows >= 1_000_000 \
                else [plan.big_rows]
            for rows in ladder:
                results[rows] = _big_call(big, rows, actors)
                log(f"  {rows:,} rows ({results[rows]['request_mb']:.1f} MB): {results[rows]['outcome']} in "
                    f"{results[rows]['seconds']:.2f}s; others p50 {results[rows]['others_p50_ms']:.2f} ms, "
                    f"p99 {results[rows]['others_p99_ms']:.2f} ms")
                time.sleep(0.5)
            rss_peak = rss.peak
        big.close()
        tally = actors.finish()
        baseline = tally.latencies_between(window_end - plan.window, window_end)
        served = [rows for rows, r in results.items() if r["outcome"] == "OK"]
        refused = [r for r in results.values() if r["outcome"] != "OK"]
        return {"rows_tried": list(results), "results": {str(k): v for k, v in results.items()},
                "biggest_served_rows": max(served) if served else 0,
                "refusal": refused[0] if refused else None,
                "target_rows": plan.big_rows, "target": results.get(plan.big_rows),
                "others_baseline_p50_ms": percentile_ms(baseline, 50),
                "others_baseline_p99_ms": percentile_ms(baseline, 99),
                "others": _tally_figures(tally),
                "rss_before_mb": round(rss_before / MB, 1), "rss_peak_mb": round(rss_peak / MB, 1),
                "rss_after_mb": round(server.rss() / MB, 1), "server_alive": server.alive}
    finally:
        if actors is not None and not actors.stop.is_set():
            actors.finish()
        server.close()


def _big_call(client: PolicyClient, rows: int, actors: Actors) -> dict[str, Any]:
    observation = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    count = np.arange(rows, dtype=np.int64)
    request = client.encode_request(time_step(observation, rows), {"count": count}, batch_size=rows)
    size = request.ByteSize()
    failed_before = sum(a.tally.failed for a in actors.actors)
    started = time.monotonic()
    try:
        answer = client.send(request)
        step = answer.policy_step
        correct = np.array_equal(step.action, 2 * observation) and np.array_equal(step.state["count"], count + 1)
        outcome, detail = ("OK" if correct else "WRONG ANSWER"), ""
    except errors.RemoteError as e:
        outcome, detail = e.code.name, e.details[:200]
    end = time.monotonic()
    during = [d for a in actors.actors for t, d in a.tally.latencies if started <= t <= end]
    failed = sum(a.tally.failed for a in actors.actors) - failed_before
    del request, observation
    return {"rows": rows, "request_mb": round(size / MB, 1), "outcome": outcome, "detail": detail,
            "seconds": round(end - started, 3), "others_calls": len(during), "others_failed": failed,
            "others_p50_ms": percentile_ms(during, 50), "others_p99_ms": percentile_ms(during, 99),
            "others_max_ms": round(max(during) * 1e3, 1) if during else float("nan")}


# ----------------------------------------------------------------- idle streams


def idle_streams(plan: Plan = Plan(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """plan.idle_streams idle streams and one client that never reads, from another process; others' latency."""
    server = ServerProcess([ECHO, STATELESS])
    actors = helper = None
    try:
        server.start()
        actors = Actors(server.address, _transports(4), timeout=plan.call_timeout).start()
        actors.wait_for_version(0, plan.call_timeout)
        time.sleep(1.0)
        t = time.monotonic()
        time.sleep(plan.window)
        before = (t, time.monotonic())
        rss_before = server.rss()
        seconds = 4 * plan.window + 30
        helper = HelperProcess(["idle", server.address, "--policy", "stateless", "--streams",
                                str(plan.idle_streams), "--seconds", str(seconds), "--non-reader"])
        helper.wait_ready()
        log(f"  {plan.idle_streams} idle streams open, one client writing and never reading")
        stats = PolicyClient(server.address, "stateless", transport="unary", timeout=plan.call_timeout)
        time.sleep(2.0)  # the non-reader fills its window and is held back
        read_then = stats.stats()[0]["requests"]
        with RssSampler(server) as rss:
            t = time.monotonic()
            time.sleep(plan.window)
            during = (t, time.monotonic())
            rss_peak = rss.peak
        read_after = stats.stats()[0]["requests"]
        threads = server.status().get("Threads", 0)
        helper.close()
        t = time.monotonic()
        time.sleep(plan.window)
        after = (t, time.monotonic())
        small = _small_non_reader(server, stats, plan)
        acking = _small_non_reader(server, stats, plan, acks=True)
        stats.close()
        refused = _non_reader_where_acks_are_required(plan)
        tally = actors.finish()
        lat = {name: tally.latencies_between(*span) for name, span in
               (("before", before), ("during", during), ("after", after), ("small_burst", small.pop("burst")),
                ("small_capped", small.pop("capped")), ("acking_burst", acking.pop("burst")),
                ("acking_capped", acking.pop("capped")))}
        return {"idle_streams": plan.idle_streams,
                **{f"{name}_p50_ms": percentile_ms(v, 50) for name, v in lat.items()},
                **{f"{name}_p99_ms": percentile_ms(v, 99) for name, v in lat.items()},
                **{f"{name}_calls": len(v) for name, v in lat.items()},
                "p50_ratio": percentile_ms(lat["during"], 50) / percentile_ms(lat["before"], 50),
                "non_reader_requests_read": read_after - plan.idle_streams,
                "non_reader_requests_read_during_window": read_after - read_then,
                "small_non_reader": small, "acking_non_reader": acking, "non_reader_acks_required": refused,
                "others": _tally_figures(tally), "server_threads": threads,
                "rss_before_mb": round(rss_before / MB, 1), "rss_during_peak_mb": round(rss_peak / MB, 1),
                "rss_after_mb": round(server.rss() / MB, 1), "server_alive": server.alive}
    finally:
        if helper is not None:
            helper.close()
        if actors is not None and not actors.stop.is_set():
            actors.finish()
        server.close()


def _small_non_reader(server: ServerProcess, stats: PolicyClient, plan: Plan, acks: bool = False) -> dict[str, Any]:
    """A client that writes one-row requests without end and never reads: what the server computes for it.

    Without acknowledgements its small answers (~150 bytes) go into its HTTP/2
    receive window, which gRPC's BDP probing grows to megabytes: the server
    computes for it until that window is full, then nothing. With them
    (`acks`: each request says it read no answer) the server computes 16
    answers and no more. Returns the requests computed, when that stopped,
    and the spans (burst, capped) for the others' latencies.
    """
    read_before = stats.stats()[0]["requests"]
    helper = HelperProcess(["idle", server.address, "--policy", "stateless", "--streams", "0", "--seconds", "60",
                            "--non-reader", "--small", *(["--acks"] if acks else [])])
    try:
        helper.wait_ready()
        started = last_growth = time.monotonic()
        read = read_before
        while time.monotonic() - last_growth < 2.0 and time.monotonic() - started < 40.0:
            time.sleep(0.25)
            now = stats.stats()[0]["requests"]
            if now > read:
                read, last_growth = now, time.monotonic()
        burst = (started, last_growth)
        t = time.monotonic()
        time.sleep(plan.window)
        capped = (t, time.monotonic())
        still = stats.stats()[0]["requests"] - read
    finally:
        helper.close()
    return {"requests_computed": read - read_before, "computing_stopped_after_s": round(last_growth - started, 2),
            "requests_computed_after_that": still, "stopped": time.monotonic() - last_growth >= 2.0,
            "rss_mb": round(server.rss() / MB, 1), "burst": burst, "capped": capped}


def _non_reader_where_acks_are_required(plan: Plan) -> dict[str, Any]:
    """The raw 1-row non-reader (no answers_read) against a server run with --stream-acks=required."""
    server = ServerProcess([ECHO, STATELESS], args=["--stream-acks", "required"])
    try:
        server.start()
        stats = PolicyClient(server.address, "stateless", transport="unary", timeout=plan.call_timeout)
        try:
            result = _small_non_reader(server, stats, plan)
        finally:
            stats.close()
        result.pop("burst"), result.pop("capped")
        return result
    finally:
        server.close()


# ----------------------------------------------------------------- fuzz


def fuzz_run(plan: Plan = Plan(), log: Callable[[str], None] = print, *, rng_seed: int = 0,
             budget: float = 900.0, tf_policy: bool = True) -> dict[str, Any]:
    """plan.fuzz_mutations mutated messages and plan.fuzz_hypothesis hypothesis examples, over every RPC.

    The server hosts "echo" (EchoBackend: state, a pushable variable) and,
    with `tf_policy`, the CartPole TF policy "cartpole" (INPUT_MODE_AS_LOCAL
    requests then run through a real TF-Agents policy). It runs with a
    3.5 GB address-space cap. The run stops by itself after `budget` seconds.
    """
    from tests.reliability import fuzz, protos  # pylint: disable=import-outside-toplevel

    server = ServerProcess(fuzz.FUZZ_SERVER_WITH_TF_POLICY if tf_policy else fuzz.FUZZ_SERVER,
                           address_space=fuzz.ADDRESS_SPACE)
    fuzzer = None
    try:
        server.start()
        fuzzer = fuzz.Fuzzer(server, protos.valid_seeds(), rng_seed=rng_seed, deadline=time.monotonic() + budget)
        fuzzer.warm_up()
        time.sleep(1.0)
        rss_before = server.rss()
        started = time.monotonic()
        rss_passes = []
        with RssSampler(server, interval=0.1) as rss:
            # Two halves, each with its own seeds: the first's growth is the allocator's high-water
            # mark (freed memory glibc keeps for reuse); a leak grows again, in proportion, in the second.
            for half in (0, 1):
                fuzzer.rng_seed = 2 * rng_seed + half  # --seed N: seeds 2N and 2N+1, no overlap between runs
                fuzzer.run(plan.fuzz_mutations // 2, plan.fuzz_hypothesis // 2)
                time.sleep(2.0)
                fuzzer.warm_up()
                time.sleep(1.0)
                rss_passes.append(server.rss())
            took = time.monotonic() - started
            peak = rss.peak
        rss_after = rss_passes[-1]
        healthy = _answers_right(server.address)
        summary = fuzz.summarize(fuzzer.report)
        log(f"  {summary['messages']:,} messages in {took:.0f}s: {summary['crashes']} crashes, "
            f"{summary['hangs']} hangs, "
            f"{summary['non_clear']} UNKNOWN/INTERNAL of the server, {summary['policy_raised_internal']} INTERNAL "
            "raised by the hosted policy's own code (as local)")
        return {**summary, "seconds": round(took, 1), "stopped_by_time_budget": fuzzer.stopped_early,
                "rss_before_mb": round(rss_before / MB, 1), "rss_after_mb": round(rss_after / MB, 1),
                "rss_peak_mb": round(peak / MB, 1), "rss_growth": round(rss_after / rss_before - 1, 4),
                "rss_first_half_mb": round(rss_passes[0] / MB, 1),
                "rss_growth_second_half": round(rss_after / rss_passes[0] - 1, 4),
                "healthy_after": healthy, "server_log": fuzz.count_log(server.stderr(), (
                    "unexpected error", "Traceback", "inference failed")),
                "policies": "echo + cartpole (TF)" if tf_policy else "echo"}
    finally:
        if fuzzer is not None:
            fuzzer.close()
        server.close()


def _answers_right(address: str) -> bool:
    """Whether the server still gives the right answer to a plain request (with the bias pushes left)."""
    with PolicyClient(address, "echo", timeout=30) as client:
        observation = np.array([1.5, -2, 3], np.float32)
        step = client.action(time_step(observation), {"count": np.array(4, np.int64)}).policy_step
        bias = float(client.variables()[1][0])
        expected = (observation * 2 + bias).astype(np.float32)
        return bool(np.array_equal(step.action, expected, equal_nan=True)) and int(step.state["count"]) == 5
