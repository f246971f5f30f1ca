"""Follow a learner without pushes: PolicySaver checkpoints or a Reverb variable container."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any

import numpy as np

from policy_server import errors
from policy_server.servicer import HostedPolicy
from policy_server.variables import check_values

logger = logging.getLogger(__name__)

# tf_agents.train.Learner + PolicySavedModelTrigger write
# <root>/policies/checkpoints/policy_checkpoint_NNNNNNNNNN/variables/variables.*
_CHECKPOINT = re.compile(r"policy_checkpoint_(\d+)$")


def latest_checkpoint(checkpoint_dir: str) -> tuple[int, str] | None:
    """(train step, path) of the newest complete checkpoint in the directory, or None."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    found = []
    for path in tf.io.gfile.glob(os.path.join(checkpoint_dir, "policy_checkpoint_*")):
        match = _CHECKPOINT.search(path.rstrip("/"))
        index = os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY, "variables.index")
        if match and tf.io.gfile.exists(index):  # the index is written last
            found.append((int(match.group(1)), path))
    return max(found) if found else None


class _Follower:
    """Polls a source every `interval` seconds and swaps newer weights in between batches."""

    def __init__(self, hosted: HostedPolicy, interval: float):
        self.hosted = hosted
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as e:  # pylint: disable=broad-except
                logger.warning("%s for policy %r failed: %s", type(self).__name__, self.hosted.name, e)
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> bool:
        """Loads newer weights if there are any; returns whether it did."""
        raise NotImplementedError


class CheckpointFollower(_Follower):
    """Follows `policy_checkpoint_NNNNNNNNNN` directories (any tf.io.gfile path).

    The policy must be a SavedModelBackend (e.g. `<root>/policies/collect_policy`);
    its version becomes the checkpoint's train step.
    """

    def __init__(self, hosted: HostedPolicy, checkpoint_dir: str, interval: float = 5.0):
        super().__init__(hosted, interval)
        if not hasattr(hosted.backend, "update_from_checkpoint"):
            raise ValueError(f"policy {hosted.name!r} ({hosted.backend.kind}) cannot load PolicySaver "
                             "checkpoints; serve its SavedModel to follow a checkpoint directory")
        self.checkpoint_dir = checkpoint_dir

    async def poll_once(self) -> bool:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, latest_checkpoint, self.checkpoint_dir)
        if found is None or found[0] <= self.hosted.backend.version:
            return False
        step, path = found
        await self.hosted.batcher.run_exclusive(lambda: self.hosted.backend.update_from_checkpoint(path, step))
        logger.info("policy %r now at version %d (checkpoint %s)", self.hosted.name, step, path)
        return True


class ReverbFollower(_Follower):
    """Follows a Reverb variable container as TF-Agents' distributed actors do.

    The learner pushes `{"policy_variables": policy.variables(), "train_step":
    train_step}` with `ReverbVariableContainer.push`; this pulls the newest
    values and swaps them in when the train step is newer.
    """

    def __init__(self, hosted: HostedPolicy, server_address: str, table: str | None = None,
                 interval: float = 1.0):
        super().__init__(hosted, interval)
        from tf_agents.experimental.distributed import (  # pylint: disable=import-outside-toplevel
            reverb_variable_container as rvc)

        import reverb  # pylint: disable=import-outside-toplevel

        self._keys = (rvc.POLICY_KEY, rvc.TRAIN_STEP_KEY)
        self.table = table or rvc.DEFAULT_TABLE
        self._client = reverb.Client(server_address)
        self._container = rvc.ReverbVariableContainer(server_address, table_names=[self.table])

    def _pull(self) -> tuple[int, list[np.ndarray]] | None:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        # pull() blocks until the table has an item; an empty table (no push
        # yet) must not hold a thread forever.
        if not self._client.server_info(timeout=10)[self.table].current_size:
            return None
        pulled = self._container.pull(self.table)
        values = [np.asarray(v) for v in tf.nest.flatten(pulled[self._keys[0]])]
        return int(np.asarray(pulled[self._keys[1]])), values

    async def poll_once(self) -> bool:
        loop = asyncio.get_running_loop()
        pulled = await loop.run_in_executor(None, self._pull)
        if pulled is None:
            return False
        step, values = pulled
        backend = self.hosted.backend
        if step <= backend.version:
            return False
        try:
            check_values(backend.variable_specs(), values)
        except errors.ServingError as e:
            logger.warning("ignoring Reverb variables for %r: %s", self.hosted.name, e.message)
            return False
        await self.hosted.batcher.run_exclusive(lambda: backend.set_variables(values, step))
        logger.info("policy %r now at version %d (Reverb table %r)", self.hosted.name, step, self.table)
        return True


def start_followers(followers: list[Any]) -> list[asyncio.Task]:
    """Starts each follower's polling loop on the running event loop."""
    return [asyncio.ensure_future(f.run()) for f in followers]
