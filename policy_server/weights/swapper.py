"""The one weight-update pipeline: every new version, pushed or followed, goes through here.

A push (`PushVariables`), the checkpoint follower and the Reverb follower
each produce a `WeightUpdate`; `WeightSwapper.apply` checks it and swaps it in
on the policy's inference thread between two batches (see `scheduler`), where it
also checks that the version does not go back. No answer mixes two versions.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Sequence

import numpy as np

from policy_client.wire import errors
from policy_server.weights.push import check_values
from policy_server.backends.base import Backend, VariableSpec
from policy_server.engine.scheduler import BatchScheduler

logger = logging.getLogger(__name__)

# How far one update may move the version (train step) forward. Train steps
# grow by far less between two pushes; a larger jump is a bogus version, and
# accepting it would refuse every later push of the real learner as older.
MAX_VERSION_STEP = 2**40


@dataclasses.dataclass(frozen=True)
class WeightUpdate:
    """New weights for one policy, and the version (train step) they are.

    Exactly one of `values` and `checkpoint` is set.

    Attributes:
      version: the train step.
      source: where they came from, for logs ("push", "checkpoint ...", "reverb ...").
      values: every variable, in the backend's variable_specs order.
      checkpoint: a PolicySaver checkpoint directory to load them from.
      num_bytes: bytes received (pushes), for logs and the answer.
    """

    version: int
    source: str
    values: Sequence[np.ndarray] | None = None
    checkpoint: str | None = None
    num_bytes: int = 0

    def __post_init__(self) -> None:
        if (self.values is None) == (self.checkpoint is None):
            raise ValueError("a WeightUpdate holds either values or a checkpoint path")

    @property
    def kind(self) -> str:
        """"push", "checkpoint" or "reverb": the first word of `source`, for metrics."""
        return self.source.split(" ", 1)[0].lower()


class WeightSwapper:
    """Applies WeightUpdates to one hosted policy, between two of its batches.

    Args:
      name: the policy's name (for messages).
      backend: the policy.
      scheduler: its batch scheduler, whose inference thread applies the swap.
    """

    def __init__(self, name: str, backend: Backend, scheduler: BatchScheduler):
        self.name = name
        self.backend = backend
        self.scheduler = scheduler
        self.applied_by_kind: collections.Counter[str] = collections.Counter()  # WeightUpdate.kind -> count

    def variable_specs(self) -> list[VariableSpec]:
        """The variables new values must match.

        Raises:
          FailedPreconditionError: the policy has no variables to replace.
        """
        specs = self.backend.variable_specs()
        if not specs:
            raise errors.FailedPreconditionError(
                f"the {self.backend.kind} policy {self.name!r} has no variables that can be pushed")
        return specs

    def check(self, update: WeightUpdate) -> None:
        """Checks an update before it is queued (cheap, on the caller's thread).

        Raises:
          FailedPreconditionError: the backend cannot take this kind of update,
            or the version is older than the one served.
          InvalidArgumentError: values that do not match the variables.
        """
        if update.values is not None:
            check_values(self.variable_specs(), update.values)
        elif not self.backend.loads_checkpoints:
            raise errors.FailedPreconditionError(
                f"the {self.backend.kind} policy {self.name!r} cannot load PolicySaver checkpoints")
        self._check_version(update)

    async def apply(self, update: WeightUpdate) -> int:
        """Checks `update`, swaps it in between two batches, and returns the version served.

        Raises:
          FailedPreconditionError, InvalidArgumentError: see `check`; the old
            weights keep serving.
          UnavailableError: the server is shutting down.
        """
        self.check(update)
        await self.scheduler.run_exclusive(lambda: self._swap(update), swap=True)
        self.applied_by_kind[update.kind] += 1
        logger.info("policy %r now at version %d (%s%s)", self.name, update.version, update.source,
                    f", {update.num_bytes} bytes" if update.num_bytes else "")
        return update.version

    def _swap(self, update: WeightUpdate) -> None:
        """Worker thread: the version check again (another update may have won), then the swap."""
        self._check_version(update)
        if update.values is not None:
            self.backend.assign_variables(update.values)
        else:
            self.backend.load_checkpoint(update.checkpoint)
        self.backend.version = int(update.version)

    def check_version(self, version: int) -> None:
        """Refuses a version that the served one rules out (before any slice of a push is buffered)."""
        self._check_version(WeightUpdate(version=version, source="", checkpoint=""))

    def _check_version(self, update: WeightUpdate) -> None:
        if update.version - self.backend.version > MAX_VERSION_STEP:
            why = (f"at most {MAX_VERSION_STEP} above the served version {self.backend.version} (a bogus version "
                   "would lock out the real learner)")
            raise errors.InvalidArgumentError.at("version", why, details=f"version {update.version}: {why}")
        if update.version < self.backend.version:
            raise errors.FailedPreconditionError.at(
                "version", f"older than the served version {self.backend.version}",
                details=f"version {update.version} is older than the served version {self.backend.version}")
