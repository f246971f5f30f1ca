"""Follow a learner without pushes: PolicySaver checkpoints or a Reverb variable container.

Each follower polls its source and hands newer weights to the policy's
WeightSwapper as a WeightUpdate, like a push.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re

import numpy as np
import tree

from policy_client.wire import errors
from policy_client.wire.status import truncate
from policy_server.engine import outcomes
from policy_server.weights.swapper import WeightSwapper, WeightUpdate

logger = logging.getLogger(__name__)

# tf_agents.train.Learner + PolicySavedModelTrigger write
# <root>/policies/checkpoints/policy_checkpoint_NNNNNNNNNN/variables/variables.*
_CHECKPOINT = re.compile(r"policy_checkpoint_(\d+)$")
# Client-supplied paths are echoed in errors cut to this length.
_PATH_CHARS = 200


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


def checkpoint_step(path: str) -> int | None:
    """The train step in a PolicySaver checkpoint directory's name (policy_checkpoint_<step>), or None."""
    match = _CHECKPOINT.search(path.rstrip("/"))
    return int(match.group(1)) if match else None


def checkpoint_train_step(path: str) -> int | None:
    """The train step a PolicySaver checkpoint holds (its `train_step` variable), or None."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    prefix = os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME)
    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor("train_step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError, KeyError):
        return None


def is_checkpoint(path: str) -> bool:
    """Whether `path` is a complete PolicySaver checkpoint (its variables index exists; it is written last).

    Raises:
      InvalidArgumentError: a path TensorFlow cannot take: a filesystem
        (s3://, hdfs://...) this server's TensorFlow does not support, or a
        malformed path (field `path`).
      FailedPreconditionError: the server may not read it, or reading failed.
      UnavailableError: its filesystem did not answer (worth retrying).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        return tf.io.gfile.exists(os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY, "variables.index"))
    except tf.errors.OpError as e:
        error = path_error(path, e)
    raise error  # outside the except block: TensorFlow's error is not kept as __context__


def not_a_checkpoint(path: str) -> errors.RemoteError:
    """The error for a path that holds no PolicySaver checkpoint: what the local policy raises.

    `SavedModelPyTFEagerPolicy.update_from_checkpoint` raises TensorFlow's
    `NotFoundError` ("Unsuccessful TensorSliceReader constructor: Failed to
    find any matching files for <path>/variables/variables"): the answer has
    its message and type (the client raises a `tf.errors.NotFoundError` that is
    also an `InvalidArgumentError` naming field `path`).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    why = f"{truncate(repr(path), _PATH_CHARS)} is not a PolicySaver checkpoint (no variables/variables.index)"
    prefix = os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME)
    try:
        tf.train.load_checkpoint(prefix)
        local = None
    except Exception as e:  # pylint: disable=broad-except
        local = (type(e).__name__, e.message) if isinstance(e, tf.errors.OpError) else None
    if local is None:  # readable, yet no index: not what PolicySaver writes
        return errors.InvalidArgumentError(f"path: {why}", fields=(("path", why),))
    return errors.InvalidArgumentError(local[1], fields=(("path", why),), reason=local[0],
                                       exception_type=f"tensorflow.errors.{local[0]}")


def path_error(path: str, error: Exception) -> errors.RemoteError:
    """The RemoteError (naming field `path`) for TensorFlow's error probing a checkpoint path."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    shown, why = truncate(repr(path), _PATH_CHARS), truncate(getattr(error, "message", "") or str(error), 300)
    if isinstance(error, tf.errors.UnimplementedError):
        scheme = truncate(path.split("://", 1)[0], 40) if "://" in path else ""
        what = f"the {scheme}:// filesystem" if scheme else "its filesystem"
        message = f"path: {shown}: {what} is not supported by this server's TensorFlow ({why})"
        return errors.InvalidArgumentError(message, fields=(("path", message),))
    if isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.OutOfRangeError)):
        message = f"path: {shown} is not a path TensorFlow can read ({why})"
        return errors.InvalidArgumentError(message, fields=(("path", message),))
    if isinstance(error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)):
        message = f"path: the filesystem of {shown} did not answer ({why}); try again"
        return errors.UnavailableError(message, fields=(("path", message),))
    if isinstance(error, (tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError)):
        message = f"path: the server may not read {shown} ({why})"
    else:
        message = f"path: the server cannot read {shown} ({type(error).__name__}: {why})"
    return errors.FailedPreconditionError(message, fields=(("path", message),))


class Follower:
    """Polls a source every `interval` seconds and applies newer weights.

    Subclasses implement `fetch`, which returns a WeightUpdate newer than
    `current` (or None); it runs on a worker thread, never on the event loop.
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
