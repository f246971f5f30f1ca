"""PolicySaver checkpoints on the server's filesystem: found, named, checked, and their errors.

`tf_agents.train.Learner` with `PolicySavedModelTrigger` writes
`<root>/policies/checkpoints/policy_checkpoint_NNNNNNNNNN/variables/variables.*`;
the checkpoint follower polls such a directory, and `LoadCheckpoint` loads
one path. TensorFlow is imported only when a path is looked at.
"""

from __future__ import annotations

import os
import re

from policy_client.wire import errors
from policy_client.wire.status import truncate

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
        return errors.InvalidArgumentError.at("path", why)
    return errors.InvalidArgumentError.at("path", why, details=local[1], reason=local[0],
                                          exception_type=f"tensorflow.errors.{local[0]}")


def path_error(path: str, error: Exception) -> errors.RemoteError:
    """The RemoteError (naming field `path`) for TensorFlow's error probing a checkpoint path."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    shown, why = truncate(repr(path), _PATH_CHARS), truncate(getattr(error, "message", "") or str(error), 300)
    if isinstance(error, tf.errors.UnimplementedError):
        scheme = truncate(path.split("://", 1)[0], 40) if "://" in path else ""
        what = f"the {scheme}:// filesystem" if scheme else "its filesystem"
        return errors.InvalidArgumentError.at("path", f"{shown}: {what} is not supported by this server's "
                                                      f"TensorFlow ({why})")
    if isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.OutOfRangeError)):
        return errors.InvalidArgumentError.at("path", f"{shown} is not a path TensorFlow can read ({why})")
    if isinstance(error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)):
        return errors.UnavailableError.at("path", f"the filesystem of {shown} did not answer ({why}); try again")
    if isinstance(error, (tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError)):
        return errors.FailedPreconditionError.at("path", f"the server may not read {shown} ({why})")
    return errors.FailedPreconditionError.at("path", f"the server cannot read {shown} ({type(error).__name__}: {why})")
