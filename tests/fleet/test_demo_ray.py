"""`make demo-ray`: the actor-learner run on a simulated 3-node Ray cluster trains CartPole to the target."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_ray_demo_trains_to_the_target_across_three_nodes():
    from examples import ray_actor_learner  # pylint: disable=import-outside-toplevel
    from examples.actor_learner import Config  # pylint: disable=import-outside-toplevel

    lines: list[str] = []
    result = ray_actor_learner.run(Config(collect_actors=4), None, nodes=3, replicas=2, log=lines.append)
    assert result["reached"], lines
    assert result["versions_monotonic"] and result["failures"] == 0, lines
    assert any("on 3 nodes" in line for line in lines), lines  # the actors really spread over the nodes
