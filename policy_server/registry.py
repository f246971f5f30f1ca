"""The named policies one server hosts, each with its scheduler, weights pipeline and stats."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import tree

from policy_client.wire import errors
from policy_client.wire.status import truncate
from policy_client.wire.step_plan import AnswerPlan, RequestPlan
from policy_server.backend import Backend
from policy_server.config import BatchingConfig
from policy_server.scheduler import BatchScheduler, StepEncoder
from policy_server.stats import PolicyStats
from policy_server.weights import WeightSwapper

# Client-supplied names are echoed in errors cut to this length.
_NAME_CHARS = 200


@dataclasses.dataclass
class HostedPolicy:
    """A named policy with its plans, batch scheduler, weight swapper and statistics."""

    name: str
    backend: Backend
    scheduler: BatchScheduler
    weights: WeightSwapper
    stats: PolicyStats
    request_plan: RequestPlan
    answer_plan: AnswerPlan

    @classmethod
    def create(cls, name: str, backend: Backend, config: BatchingConfig,
               encoder: Callable[[AnswerPlan], StepEncoder] | None = None) -> "HostedPolicy":
        """Hosts `backend`; `encoder` builds the scheduler's StepEncoder from the answer plan."""
        specs = backend.specs
        request_plan = RequestPlan(specs.time_step_spec, specs.policy_state_spec)
        answer_plan = AnswerPlan(specs.action_spec, specs.policy_state_spec, specs.info_spec)
        stats = PolicyStats()
        scheduler = BatchScheduler(backend, config, stats, encoder=encoder(answer_plan) if encoder else None)
        return cls(name, backend, scheduler, WeightSwapper(name, backend, scheduler), stats,
                   request_plan, answer_plan)

    @property
    def stateful(self) -> bool:
        """Whether the policy carries a recurrent state."""
        return bool(tree.flatten(self.backend.specs.policy_state_spec))


class Registry:
    """The named policies of one server; the first one named is the default."""

    def __init__(self) -> None:
        self._policies: dict[str, HostedPolicy] = {}
        self._expected: list[str] = []

    def expect(self, names) -> None:
        """Names the policies that will be added once loaded (FAILED_PRECONDITION until then)."""
        self._expected = list(names)

    def add(self, hosted: HostedPolicy) -> None:
        if hosted.name in self._policies:
            raise ValueError(f"policy {hosted.name!r} is already registered")
        self._policies[hosted.name] = hosted

    def get(self, name: str) -> HostedPolicy:
        """Returns the named policy (the default, the first one named, for an empty name).

        Raises:
          PolicyNotFoundError: an unknown name.
          FailedPreconditionError: a policy still loading.
        """
        if not name and self._expected:
            name = self._expected[0]
        hosted = self._policies.get(name)
        if hosted is not None:
            return hosted
        shown = truncate(repr(name), _NAME_CHARS)
        if name in self._expected:
            raise errors.FailedPreconditionError(f"policy {shown} is still loading")
        raise errors.PolicyNotFoundError(f"no policy named {shown}; this server hosts {sorted(self._expected)}",
                                         fields=(("policy", "no such policy"),))

    def __iter__(self) -> Iterator[HostedPolicy]:
        return iter(self._policies.values())

    def __len__(self) -> int:
        return len(self._policies)
