"""The fuzz run: mutated and hypothesis-generated messages over every RPC of a subprocess server.

Senders use raw channels (bytes in, no client-side checks, no retries), so
exactly the fuzzed bytes reach the server. Each outcome is classified:

- clear: OK and the documented refusals (INVALID_ARGUMENT, NOT_FOUND,
  FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNIMPLEMENTED, ...);
- non-clear: UNKNOWN and INTERNAL. An INTERNAL that carries the hosted
  policy's own exception type for an INPUT_MODE_AS_LOCAL request is the
  documented "as local" behaviour (the policy's own code raised it, e.g.
  EchoBackend's AttributeError on a list) and is counted apart as
  `policy_raised`; every other INTERNAL counts as the server's;
- hang: a call that ran out of its deadline, or a stream that ended without
  answering every message it was sent;
- crash: the server process died (it is restarted and the run goes on).

Each non-clear or hanging signature keeps a few of its messages (base64) for
a repro. The server's RSS is read before (after a warm-up) and after (after
a settle and the same warm-up again), and sampled in between for its peak.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import queue
import random
import re
import threading
import time
import warnings
from typing import Any, Callable, Iterable

import grpc
from hypothesis import HealthCheck, Phase, given, seed, settings

from policy_client.wire import status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from tests.reliability import protos
from tests.reliability.mutator import Mutator
from tests.reliability.procs import ServerProcess

SERVICE = "/tfa_policy_grpc.v1.PolicyService/"
CLEAR = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED",
         "OUT_OF_RANGE", "PERMISSION_DENIED", "UNAUTHENTICATED", "ALREADY_EXISTS", "ABORTED"}
NON_CLEAR = {"UNKNOWN", "INTERNAL"}
UNARY_TIMEOUT = 20.0
STREAM_TIMEOUT = 60.0
STREAM_BATCH = 32
# How often each RPC is picked by the mutation workers (ActionStream sends STREAM_BATCH messages per pick).
WEIGHTS = {"Action": 16, "ActionStream": 1, "PushVariables": 8, "GetSpecs": 4, "GetInitialState": 8, "GetStats": 4,
           "ListPolicies": 2, "GetVariables": 4, "LoadCheckpoint": 6}
FUZZ_SERVER = ("echo=tests.reliability.backends:echo",)
FUZZ_SERVER_WITH_TF_POLICY = FUZZ_SERVER + ("cartpole=examples.cartpole:cartpole_q_policy",)
ADDRESS_SPACE = int(3.5 * (1 << 30))  # a request asking for gigabytes gets MemoryError, not the OOM killer
_DIGITS = re.compile(r"\d+(\.\d+)?")


@dataclasses.dataclass
class Report:
    """Counts of one fuzz run (thread-safe through `lock`)."""

    messages: int = 0
    by_source: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    codes: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # (rpc, code) -> n
    non_clear: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # signature -> n
    policy_raised: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    hangs: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    other: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # UNAVAILABLE, CANCELLED...
    samples: dict = dataclasses.field(default_factory=dict)  # signature -> [base64 messages]
    crashes: list = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def record(self, source: str, rpc: str, code: str, detail: str, messages: list[bytes], *, as_local: bool = False,
               exception_type: str = "", reason: str = "", hang: bool = False, count: int = 1) -> None:
        signature = f"{rpc} {code} {reason or exception_type or ''} {_DIGITS.sub('N', detail[:60])}".strip()
        with self.lock:
            self.messages += count
            self.by_source[source] += count
            self.codes[(rpc, code)] += count
            if hang:
                self.hangs[signature] += count
            elif code in NON_CLEAR:
                if code == "INTERNAL" and as_local and exception_type:
                    self.policy_raised[signature] += count
                    return
                self.non_clear[signature] += count
            elif code not in CLEAR:
                self.other[signature] += count
                return
            else:
                return
            kept = self.samples.setdefault(signature, [])
            if len(kept) < 3:
                kept.append([base64.b64encode(m).decode() for m in messages[:4]])


def _as_local(rpc: str, data: bytes) -> bool:
    """Whether a request asks for INPUT_MODE_AS_LOCAL handling (so the hosted policy's own code runs it)."""
    if rpc not in ("Action", "ActionStream"):
        return rpc == "GetInitialState" and _parses(service_pb.GetInitialStateRequest, data, "input_mode") == 2
    try:
        request = service_pb.ActionRequest.FromString(data)
    except Exception:  # pylint: disable=broad-except
        return False
    return request.input_mode == service_pb.INPUT_MODE_AS_LOCAL or request.HasField("any_time_step")


def _without_acks(data: bytes) -> bytes:
    """A stream message as a client that does not acknowledge sends it (any answers_read a mutation made, cleared).

    This sender writes a whole batch before reading, which a client that
    acknowledges must not do (docs/protocol.md, flow control): its stream
    would stop at 16 answers, as it should. tests/policy_server/test_stream_acks.py
    covers acknowledgements.
    """
    try:
        request = service_pb.ActionRequest.FromString(data)
    except Exception:  # pylint: disable=broad-except
        return data
    if not request.HasField("answers_read"):
        return data
    request.ClearField("answers_read")
    return request.SerializeToString()


def _parses(message_type: Any, data: bytes, field: str) -> Any:
    try:
        return getattr(message_type.FromString(data), field)
    except Exception:  # pylint: disable=broad-except
        return None


class Sender:
    """Sends fuzz items on one channel and records their outcomes in a Report."""

    def __init__(self, address: str, report: Report, source: str):
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 256 << 20),
                                                                ("grpc.max_send_message_length", 256 << 20)])
        self.report, self.source = report, source
        self.recent: collections.deque = collections.deque(maxlen=8)  # for a crash report

    def close(self) -> None:
        self.channel.close()

    def send(self, rpc: str, messages: list[bytes]) -> None:
        self.recent.append((rpc, messages))
        if rpc == "ActionStream":
            self._stream(messages)
        elif rpc == "PushVariables":
            self._push(messages)
        else:
            self._unary(rpc, messages[0])

    def _unary(self, rpc: str, data: bytes) -> None:
        call = self.channel.unary_unary(SERVICE + rpc)
        try:
            call(data, timeout=UNARY_TIMEOUT)
            self.report.record(self.source, rpc, "OK", "", [data])
        except grpc.RpcError as e:
            self._failed(rpc, e, [data], _as_local(rpc, data))

    def _push(self, messages: list[bytes]) -> None:
        call = self.channel.stream_unary(SERVICE + "PushVariables")
        try:
            call(iter(messages), timeout=UNARY_TIMEOUT)
            self.report.record(self.source, "PushVariables", "OK", "", messages, count=len(messages))
        except grpc.RpcError as e:
            self._failed("PushVariables", e, messages, False, count=len(messages))

    def _failed(self, rpc: str, error: grpc.RpcError, messages: list[bytes], as_local: bool, count: int = 1) -> None:
        code = error.code().name
        remote = status.from_rpc_error(error)
        self.report.record(self.source, rpc, code, remote.details or "", messages, as_local=as_local,
                           exception_type=remote.exception_type, reason=remote.reason,
                           hang=code == "DEADLINE_EXCEEDED", count=count)

    def _stream(self, messages: list[bytes]) -> None:
        messages = [_without_acks(m) for m in messages]
        call = self.channel.stream_stream(SERVICE + "ActionStream",
                                          response_deserializer=service_pb.ActionResponse.FromString)
        answers = 0
        responses = call(iter(messages), timeout=STREAM_TIMEOUT)
        try:
            for response, data in zip(responses, messages):
                answers += 1
                if not response.HasField("error"):
                    self.report.record(self.source, "ActionStream", "OK", "", [data])
                    continue
                remote = status.from_status(response.error)
                self.report.record(self.source, "ActionStream", remote.code.name, remote.details, [data],
                                   as_local=_as_local("ActionStream", data), exception_type=remote.exception_type,
                                   reason=remote.reason)
            stream_code = responses.code().name if answers == len(messages) else None
            if stream_code is None:
                list(responses)  # the stream's end
                stream_code = responses.code().name
        except grpc.RpcError as e:
            stream_code = e.code().name
        missing = messages[answers:]
        if missing:  # not answered: a hang (deadline) or a stream that ended early
            self.report.record(self.source, "ActionStream", f"UNANSWERED({stream_code})", "", missing,
                               hang=True, count=len(missing))
        elif stream_code != "OK":
            self.report.record(self.source, "ActionStream", f"STREAM_{stream_code}", "", messages[-1:], count=0)


class Fuzzer:
    """Drives a fuzz run against `server`, restarting it if it crashes.

    Args:
      server: the started server (its `address` is used throughout).
      seeds: rpc -> valid message lists (protos.valid_seeds()).
      rng_seed: seeds every worker's random source and hypothesis.
      deadline: time.monotonic() after which every worker stops early (the run's time budget).
    """

    def __init__(self, server: ServerProcess, seeds: dict[str, list[list[bytes]]], rng_seed: int = 0,
                 deadline: float | None = None):
        self.server, self.seeds, self.rng_seed = server, seeds, rng_seed
        self.report = Report()
        self.deadline = deadline if deadline is not None else time.monotonic() + 3600
        self.stopped_early = False
        self._senders: list[Sender] = []
        self._restart_lock = threading.Lock()

    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.stopped_early = True
            return True
        return False

    def check_alive(self) -> None:
        """Restarts a crashed server (once per crash), recording what each sender sent last."""
        with self._restart_lock:
            if self.server.alive:
                return
            code = self.server.proc.returncode if self.server.proc else None
            self.report.crashes.append({"exit_code": code, "stderr_tail": self.server.stderr()[-2000:],
                                        "recent": [(rpc, [base64.b64encode(m).decode() for m in ms[:2]])
                                                   for s in self._senders for rpc, ms in list(s.recent)[-3:]]})
            self.server.start()

    def run(self, mutations: int, examples: int) -> None:
        """The mutation workers and the hypothesis run at the same time."""
        worker = threading.Thread(target=self.mutations, args=(mutations,), daemon=True)
        worker.start()
        try:
            self.hypothesis(examples)
        finally:
            worker.join()

    def mutations(self, count: int, workers: int = 3) -> None:
        """`count` mutated messages over every RPC, from `workers` threads."""
        donors = [m for items in self.seeds.values() for ms in items for m in ms]
        rpcs = list(WEIGHTS)
        weights = [WEIGHTS[r] for r in rpcs]

        def work(index: int, quota: int) -> None:
            rng = random.Random(self.rng_seed * 1000 + index)
            mutator = Mutator(rng, donors)
            sender = self._sender("mutation")
            sent = 0
            while sent < quota and not self.out_of_time():
                rpc = rng.choices(rpcs, weights)[0]
                if rpc == "ActionStream":
                    batch = [mutator.mutate(rng.choice(self.seeds[rpc])[0])
                             for _ in range(min(STREAM_BATCH, quota - sent))]
                else:
                    batch = [mutator.mutate(m) if rng.random() < 0.8 or len(ms) == 1 else m
                             for ms in [rng.choice(self.seeds[rpc])] for m in ms]
                self._send(sender, rpc, batch)
                sent += len(batch)

        self._run_threads(work, count, workers)

    def hypothesis(self, examples: int, consumers: int = 2) -> None:
        """`examples` hypothesis-generated items (every RPC), sent by `consumers` threads."""
        items: queue.Queue = queue.Queue(maxsize=512)
        done = object()

        def consume(index: int, _quota: int) -> None:
            sender = self._sender("hypothesis")
            stream: list[bytes] = []
            while True:
                item = items.get()
                if item is done:
                    break
                rpc, messages = item
                if rpc == "ActionStream":
                    stream.extend(messages)
                    if len(stream) >= STREAM_BATCH // 2:
                        self._send(sender, rpc, stream)
                        stream = []
                else:
                    self._send(sender, rpc, messages)
            if stream:
                self._send(sender, "ActionStream", stream)

        threads = [threading.Thread(target=consume, args=(i, 0), daemon=True) for i in range(consumers)]
        for t in threads:
            t.start()

        @seed(self.rng_seed)
        @settings(max_examples=examples, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(protos.requests)
        def generate(item):
            if not self.out_of_time():
                items.put(item)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                generate()
        finally:
            for _ in threads:
                items.put(done)
            for t in threads:
                t.join(STREAM_TIMEOUT + 30)

    def warm_up(self, rounds: int = 50) -> None:
        """Valid messages of every RPC (the same before and after, for the RSS figures)."""
        sender = Sender(self.server.address, Report(), "warm-up")
        try:
            for _ in range(rounds):
                for rpc, items in self.seeds.items():
                    for messages in items:
                        sender.send(rpc, messages)
        finally:
            sender.close()

    def _sender(self, source: str) -> Sender:
        sender = Sender(self.server.address, self.report, source)
        self._senders.append(sender)
        return sender

    def _send(self, sender: Sender, rpc: str, messages: list[bytes]) -> None:
        sender.send(rpc, messages)
        if not self.server.alive:
            self.check_alive()

    def _run_threads(self, work: Callable[[int, int], None], count: int, workers: int) -> None:
        quotas = [count // workers + (i < count % workers) for i in range(workers)]
        threads = [threading.Thread(target=work, args=(i, q), daemon=True) for i, q in enumerate(quotas)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        for sender in self._senders:
            sender.close()


def summarize(report: Report) -> dict[str, Any]:
    by_rpc: dict[str, dict[str, int]] = {}
    for (rpc, code), n in sorted(report.codes.items()):
        by_rpc.setdefault(rpc, {})[code] = n
    return {"messages": report.messages, "by_source": dict(report.by_source), "by_rpc": by_rpc,
            "crashes": len(report.crashes), "crash_details": report.crashes[:3],
            "hangs": sum(report.hangs.values()), "hang_signatures": dict(report.hangs.most_common(10)),
            "non_clear": sum(report.non_clear.values()), "non_clear_signatures": dict(report.non_clear.most_common(20)),
            "policy_raised_internal": sum(report.policy_raised.values()),
            "policy_raised_signatures": dict(report.policy_raised.most_common(10)),
            "other_codes": dict(report.other.most_common(10)),
            "samples": {k: v for k, v in report.samples.items()}}


def count_log(text: str, needles: Iterable[str]) -> dict[str, int]:
    return {needle: text.count(needle) for needle in needles}
