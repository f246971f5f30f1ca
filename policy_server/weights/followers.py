"""Follow a learner without pushes: PolicySaver checkpoints or a Reverb variable container.

Each follower polls its source and hands newer weights to the policy's
WeightSwapper as a WeightUpdate, like a push.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import tree

from policy_client.wire import errors
from policy_server.engine import outcomes
from policy_server.weights.checkpoints import latest_checkpoint
from policy_server.weights.swapper import WeightSwapper, WeightUpdate

logger = logging.getLogger(__name__)


class Follower:
    """Polls a source every `interval` seconds and applies newer weights.

    Subclasses implement `fetch`, which returns a WeightUpdate newer than
    `current` (or None); it runs on a thread of the event loop's executor, never on the event loop.
    """

    def __init__(self, swapper: WeightSwapper, interval: float):
        self.swapper = swapper
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as e:  # pylint: disable=broad-except
                logger.warning("%s for policy %r failed: %s", type(self).__name__, self.swapper.name, e)
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> bool:
        """Applies newer weights if the source has any; returns whether it did."""
        current = self.swapper.backend.version
        # Through outcomes.capture: a StopIteration of the source (a Reverb iterator) cannot cross a future.
        update = outcomes.unwrap(await asyncio.get_running_loop().run_in_executor(
            None, outcomes.capture, lambda: self.fetch(current)))
        if update is None or update.version <= current:
            return False
        try:
            await self.swapper.apply(update)
        except (errors.InvalidArgumentError, errors.FailedPreconditionError) as e:
            logger.warning("ignoring %s for %r: %s", update.source, self.swapper.name, e.details)
            return False
        return True

    def fetch(self, current: int) -> WeightUpdate | None:
        raise NotImplementedError


class CheckpointFollower(Follower):
    """Follows `policy_checkpoint_NNNNNNNNNN` directories (any tf.io.gfile path).

    The policy's backend must load PolicySaver checkpoints (a SavedModelBackend
    of e.g. `<root>/policies/collect_policy`); its version becomes the
    checkpoint's train step.

    Raises:
      ValueError: the backend cannot load checkpoints.
    """

    def __init__(self, swapper: WeightSwapper, checkpoint_dir: str, interval: float = 5.0):
        super().__init__(swapper, interval)
        if not swapper.backend.loads_checkpoints:
            raise ValueError(f"policy {swapper.name!r} ({swapper.backend.kind}) cannot load PolicySaver "
                             "checkpoints; serve its SavedModel to follow a checkpoint directory")
        self.checkpoint_dir = checkpoint_dir

    def fetch(self, current: int) -> WeightUpdate | None:
        found = latest_checkpoint(self.checkpoint_dir)
        if found is None or found[0] <= current:
            return None
        step, path = found
        return WeightUpdate(version=step, source=f"checkpoint {path}", checkpoint=path)


class ReverbFollower(Follower):
    """Follows a Reverb variable container as TF-Agents' distributed actors do.

    The learner pushes `{"policy_variables": policy.variables(), "train_step":
    train_step}` with `ReverbVariableContainer.push`; this pulls the newest
    values and applies them when the train step is newer.
    """

    def __init__(self, swapper: WeightSwapper, server_address: str, table: str | None = None,
                 interval: float = 1.0):
        super().__init__(swapper, interval)
        from tf_agents.experimental.distributed import (  # pylint: disable=import-outside-toplevel
            reverb_variable_container as rvc)

        import reverb  # pylint: disable=import-outside-toplevel

        self._keys = (rvc.POLICY_KEY, rvc.TRAIN_STEP_KEY)
        self.table = table or rvc.DEFAULT_TABLE
        self._client = reverb.Client(server_address)
        self._container = rvc.ReverbVariableContainer(server_address, table_names=[self.table])

    def fetch(self, current: int) -> WeightUpdate | None:
        # pull() blocks until the table has an item; an empty table (no push
        # yet) must not hold a thread forever.
        if not self._client.server_info(timeout=10)[self.table].current_size:
            return None
        pulled = self._container.pull(self.table)
        step = int(np.asarray(pulled[self._keys[1]]))
        if step <= current:
            return None
        values = [np.asarray(v) for v in tree.flatten(pulled[self._keys[0]])]
        return WeightUpdate(version=step, source=f"Reverb table {self.table!r}", values=values)
