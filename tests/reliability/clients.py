"""Client processes for the fault suite, without TensorFlow (numpy, gRPC and the wire layer only).

    python -m tests.reliability.clients idle ADDRESS --streams 200 --seconds 30 [--non-reader]

opens STREAMS action streams to the "echo" policy (stateless or not, see
--stateful), each on its own channel as separate actors would, sends one
request on each and reads its answer, then keeps them open and idle. With
--non-reader it also opens one stream that writes large requests as fast as
it can and never reads an answer (with --small: one-row requests, without
end, whose small answers fill the client's HTTP/2 window much later; with --acks
its requests say it read no answer, as a client that acknowledges and stops reading). It prints "ready STREAMS" once every
stream has had its answer, and exits by itself after SECONDS.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import grpc
import numpy as np

from policy_client import wire
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from policy_client.wire.standins import TimeStep

NON_READER_ROWS = 20_000  # ~0.5 MB per answer: a few fill the HTTP/2 window of a client that never reads


def time_step(observation: np.ndarray, rows: int = 0) -> TimeStep:
    """An EchoBackend time step (FIRST), batched when rows > 0."""
    outer = (rows,) if rows else ()
    return TimeStep(np.zeros(outer, np.int32), np.zeros(outer, np.float32), np.ones(outer, np.float32),
                    np.asarray(observation, np.float32))


def echo_request(policy: str, observation: np.ndarray, rows: int = 0, stateful: bool = False,
                 request_id: int = 1) -> service_pb.ActionRequest:
    """What PolicyClient.encode_request builds for an EchoBackend step (state {"count": 0} when stateful)."""
    request = service_pb.ActionRequest(policy=policy, batch_size=rows, request_id=request_id)
    wire.write_time_step(request.time_step, time_step(observation, rows))
    wire.write_nest(request.policy_state, {"count": np.zeros((rows,) if rows else (), np.int64)} if stateful else ())
    return request


def idle(args: argparse.Namespace) -> int:
    stop = threading.Event()
    calls, channels = [], []
    request = echo_request(args.policy, np.zeros(3, np.float32), stateful=args.stateful)

    def one_then_wait():
        yield request
        stop.wait(args.seconds + 5)

    for _ in range(args.streams):
        channel = grpc.insecure_channel(args.address)
        channels.append(channel)
        call = service_grpc.PolicyServiceStub(channel).ActionStream(one_then_wait(), timeout=args.seconds + 30,
                                                                    wait_for_ready=True)
        calls.append(call)
    for call in calls:
        answer = next(call)
        if answer.HasField("error"):
            print(f"idle stream answered an error: {answer.error.message}", file=sys.stderr, flush=True)
            return 1
    flood = None
    if args.non_reader:
        channel = grpc.insecure_channel(args.address)
        channels.append(channel)
        if args.small:  # one-row requests, as many as gRPC takes (a CartPole-sized answer is ~150 bytes)
            message, count = echo_request(args.policy, np.zeros(3, np.float32), stateful=args.stateful), 10**9
            if args.acks:
                message.answers_read = 0
        else:
            rows = NON_READER_ROWS
            message = echo_request(args.policy, np.zeros((rows, 3), np.float32), rows, stateful=args.stateful)
            count = 400

        def requests():
            for i in range(count):
                if stop.is_set():
                    return
                message.request_id = i + 2
                yield message

        flood = service_grpc.PolicyServiceStub(channel).ActionStream(requests(), timeout=args.seconds + 30)
    print(f"ready {len(calls)}", flush=True)
    time.sleep(args.seconds)
    stop.set()
    for call in calls + ([flood] if flood is not None else []):
        call.cancel()
    for channel in channels:
        channel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.clients")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("idle", help="idle streams (and a client that never reads)")
    p.add_argument("address")
    p.add_argument("--policy", default="echo")
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--stateful", action="store_true")
    p.add_argument("--non-reader", action="store_true")
    p.add_argument("--small", action="store_true", help="the non-reader writes one-row requests without end")
    p.add_argument("--acks", action="store_true", help="the small non-reader's requests carry answers_read = 0")
    args = parser.parse_args(argv)
    return idle(args)


if __name__ == "__main__":
    sys.exit(main())
