"""A fleet on a simulated 3-node Ray cluster survives a lost node, a learner restart and a loading replica.

The cluster: the head (this process, a learner, two actors) and nodes A and
B, each with a policy-server replica and two actors. Every actor checks
every answer (tests/fleet/bodies.py), keeps its versions from going back
(min_version) and counts what failed. Node A is killed mid-run with all its
processes: its replica and its two actors. What must hold:

- the actors on the head and on B go on acting: no failed call, no wrong
  (crossed, duplicated or stale) answer, no version going back;
- Ray restarts the lost replica and both lost actors elsewhere; they rejoin
  and serve (the restarted replica at a new address, found by the clients);
- the learner, killed and restarted by Ray, goes on pushing from where it was;
- a replica that is still loading gets no traffic, even from a client that
  names it in its target.

Every Ray listener binds 127.0.0.1 (policy_fleet.cluster). One module-scoped
cluster serves every test here.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from policy_client import PolicyClient  # noqa: E402
from policy_fleet import ActorFleet, LocalCluster, ReplicaSet  # noqa: E402
from tests.fleet.bodies import POLICY, CheckedEcho, start_learner  # noqa: E402
from tests.support.fakes import echo_time_step  # noqa: E402

pytestmark = [pytest.mark.timeout(600)]

ECHO = ["--factory", f"{POLICY}=tests.support.fakes:EchoBackend", "--stats-interval", "0"]
WAIT = 120.0


def wait_for(predicate, what: str, timeout: float = WAIT, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(nodes=3, num_cpus=4) as local:
        yield local


def totals(reports, indexes):
    """Summed checks of the actors at `indexes` (their reports' detail)."""
    picked = [r for r in reports if r.index in indexes]
    return {key: sum(r.detail[key] for r in picked) for key in ("calls", "ok", "wrong", "failed")}


def test_a_lost_node_costs_the_others_nothing_and_its_processes_come_back(cluster):
    head, node_a, node_b = cluster.head_id, *cluster.worker_ids
    replicas = ReplicaSet.start(ECHO, replicas=2, num_cpus=1, nodes=[node_a, node_b], timeout=WAIT)
    before = {i.index: i for i in replicas.infos()}
    assert {i.node_id for i in before.values()} == {node_a, node_b}
    learner = start_learner(replicas)
    fleet = ActorFleet(replicas, CheckedEcho, 6, num_cpus=0.5, nodes=[node_a, node_a, node_b, node_b, head, head])
    try:
        reports = wait_for(lambda: (r := fleet.reports()) and len(r) == 6 and all(x.detail["ok"] >= 40 for x in r)
                           and r, "every actor acting")
        assert {r.index: r.node_id for r in reports} == {0: node_a, 1: node_a, 2: node_b, 3: node_b, 4: head,
                                                        5: head}
        # Actors on a replica's node use that replica alone (shared memory where offered); the head's, both.
        assert reports[0].target == before[0].address and reports[2].target == before[1].address
        assert reports[4].target.startswith("ipv4:")
        # An actor beside its replica negotiated the shared-memory plane, as on any host; balanced ones use gRPC.
        assert [r.detail["plane"] for r in reports] == ["shm"] * 4 + ["grpc"] * 2
        survivors = (2, 3, 4, 5)
        at_kill = totals(reports, survivors)
        lost = {r.index: r.started for r in reports if r.index in (0, 1)}

        killed_at = time.monotonic()
        cluster.kill_node(node_a)  # a lost machine: its raylet, the replica and both actors, at once

        # Ray restarts the lost replica elsewhere; it serves at a new address that the clients find.
        moved = wait_for(lambda: [i for i in replicas.infos() if i.index == 0 and i.serving
                                  and i.node_id != node_a], "the lost replica serving again")[0]
        assert moved.address != before[0].address and moved.started > before[0].started
        replica_back = time.monotonic() - killed_at
        # ...and the lost actors, which rejoin and act.
        back = wait_for(lambda: [r for r in fleet.reports() if r.index in lost and r.started > lost[r.index]
                                 and r.detail["ok"] >= 20], "the lost actors acting again")
        assert len(back) == 2 and all(r.node_id != node_a for r in back)
        actors_back = time.monotonic() - killed_at
        wait_for(lambda: any(moved.address in r.target for r in fleet.reports() if r.index in (4, 5)),
                 "the head's actors balancing over the restarted replica too")
        after = fleet.stop()
    finally:
        ray.get(learner.stop.remote())
        replicas.stop()

    final = totals(after, survivors)
    print(f"\nnode loss: survivors {final['calls']} calls ({final['calls'] - at_kill['calls']} after the kill), "
          f"{final['failed']} failed, {final['wrong']} wrong; replica serving again after {replica_back:.1f} s, "
          f"lost actors acting again after {actors_back:.1f} s; versions {[r.versions for r in after]}")
    assert final["ok"] > at_kill["ok"] + 100  # the survivors went on acting through the loss
    assert final["failed"] == 0 and final["wrong"] == 0, [r.detail["errors"] for r in after]
    assert final["calls"] == final["ok"]  # nothing accepted was lost, nothing answered twice
    assert all(r.backwards == 0 for r in after)
    assert all(r.detail["wrong"] == 0 and r.failures == 0 for r in after)


def test_a_restarted_learner_goes_on_pushing(cluster):
    replicas = ReplicaSet.start(ECHO, replicas=2, num_cpus=1, timeout=WAIT)
    learner = start_learner(replicas, period=0.1)
    try:
        first = wait_for(lambda: (r := ray.get(learner.report.remote())) and r["pushes"] >= 10 and r,
                         "the learner pushing")
        ray.kill(learner, no_restart=False)  # Ray restarts it (max_restarts=1)
        again = wait_for(lambda: (r := _report(learner)) and r["started"] > first["started"] and r["pushes"] >= 10
                         and r, "the restarted learner pushing")
        assert again["first"] >= first["version"] - 1  # it resumed from what the replicas serve, not from 0
        assert again["version"] > again["first"] and again["failures"] == 0
        served = [p["version"] for stats in replicas.stats().values() for p in stats]
        assert min(served) > first["version"]
    finally:
        ray.kill(learner, no_restart=True)
        replicas.stop()


def _report(learner):
    try:
        return ray.get(learner.report.remote(), timeout=10)
    except (ray.exceptions.RayError, TimeoutError):
        return None


def test_a_replica_that_is_still_loading_gets_no_traffic(cluster):
    replicas = ReplicaSet.start(ECHO, replicas=1, num_cpus=1, timeout=WAIT)
    slow = ReplicaSet.start(["--factory", f"{POLICY}=tests.support.fakes:slow_loading_echo", "--stats-interval",
                             "0"], replicas=1, num_cpus=1, env={"SLOW_ECHO_SECONDS": "6"}, wait=False)
    try:
        loading = wait_for(lambda: [i for i in slow.infos() if i.address], "the slow replica listening")[0]
        assert not loading.serving
        serving = replicas.infos()[0].address
        # Even a client that names the loading replica in its (balanced, health-checked) target is kept off it.
        with PolicyClient(f"ipv4:{serving},{loading.address}", POLICY, timeout=30) as client:
            answered = 0
            while not slow.infos()[0].serving:
                client.action(echo_time_step(np.ones(3, np.float32)), {"count": np.array(0, np.int64)})
                answered += 1
            assert answered >= 20  # the scenario happened: calls while it loaded
        stats = slow.stats()[loading.address]
        assert stats[0]["requests"] == 0
        assert slow.target() == loading.address  # once it serves, it is in the target
    finally:
        slow.stop()
        replicas.stop()


def test_a_replica_runs_its_server_with_workers(cluster):
    """`workers=2`: each replica is a `policy-server --workers 2` (two processes on its port)."""
    replicas = ReplicaSet.start(ECHO, replicas=1, num_cpus=1, workers=2, timeout=WAIT)
    try:
        (info,) = replicas.infos()
        with PolicyClient(info.address, POLICY, timeout=30, data_plane="grpc") as client:
            result = client.action(echo_time_step(np.ones(3, np.float32)), {"count": np.array(0, np.int64)})
            np.testing.assert_array_equal(result.policy_step.action, 2 * np.ones(3, np.float32))
        children = open(f"/proc/{info.pid}/task/{info.pid}/children").read().split()
        assert len(children) == 2  # the supervisor's two workers
    finally:
        replicas.stop()
