"""The fuzz subset of `make test`: the mutation engine itself, and a short seeded fuzz run of every RPC.

The run sends about 4,000 messages to a subprocess server (its address space capped) and fails on a
crash, a hang, or an UNKNOWN/INTERNAL status that no known defect explains. The full run
(`make reliability`) sends over 100,000.
"""

from __future__ import annotations

import random

import pytest

from policy_client.wire.generated import types_pb2 as pb
from tests.reliability import fuzz, mutator, protos
from tests.reliability.procs import ServerProcess
from tests.reliability.scenarios import _answers_right

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(240)]


def test_the_wire_codec_round_trips_every_seed():
    for rpc, items in protos.valid_seeds().items():
        for messages in items:
            for data in messages:
                fields = mutator.parse(data)
                assert fields is not None or data == b"", rpc
                assert mutator.serialize(fields or []) == data, rpc


def test_mutations_are_deterministic_and_mostly_new():
    seeds = [m for items in protos.valid_seeds().values() for ms in items for m in ms]
    first = [mutator.Mutator(random.Random(7), seeds).mutate(s) for s in seeds * 20]
    again = [mutator.Mutator(random.Random(7), seeds).mutate(s) for s in seeds * 20]
    assert first == again
    assert sum(m not in seeds for m in first) > 0.8 * len(first)  # tiny seeds (b"") sometimes stay


def test_nests_are_wrapped_to_the_depth_asked():
    leaf = mutator.parse(pb.Nest(tensor=pb.Tensor(dtype=pb.DTYPE_INT64, content=bytes(8))).SerializeToString())
    nest = leaf
    for kind in ("list", "tuple", "dict", "named_tuple") * 5:
        nest = mutator._wrap_nest(nest, kind)  # pylint: disable=protected-access
    parsed = pb.Nest.FromString(mutator.serialize(nest))
    depth = 0
    while parsed.WhichOneof("value") != "tensor":
        kind = parsed.WhichOneof("value")
        parsed = {"list": lambda n: n.list.values[0], "tuple": lambda n: n.tuple.values[0],
                  "dict": lambda n: n.dict.entries[0].value,
                  "named_tuple": lambda n: n.named_tuple.fields[0].value}[kind](parsed)
        depth += 1
    assert depth == 20


def test_a_seeded_fuzz_run_of_every_rpc():
    with ServerProcess(fuzz.FUZZ_SERVER, address_space=fuzz.ADDRESS_SPACE) as server:
        server.start()
        fuzzer = fuzz.Fuzzer(server, protos.valid_seeds(), rng_seed=1)
        try:
            fuzzer.warm_up(5)
            fuzzer.run(3_000, 300)
            healthy = _answers_right(server.address)
        finally:
            fuzzer.close()
    summary = fuzz.summarize(fuzzer.report)
    assert summary["messages"] >= 3_300
    assert set(summary["by_rpc"]) == set(protos.RPCS)
    assert summary["crashes"] == 0, summary["crash_details"]
    assert summary["hangs"] == 0, summary["hang_signatures"]
    # Every UNKNOWN / INTERNAL of the server fails the run: defects A-F are fixed, none is excused.
    assert summary["non_clear_signatures"] == {}, summary["samples"]
    assert summary["other_codes"] == {}
    assert healthy
