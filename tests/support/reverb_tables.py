"""A Reverb server holding a variable container as tf_agents' ReverbVariableContainer keeps one (for followers)."""

from __future__ import annotations

from typing import Any


def variable_container(policy: Any, table: str | None = None) -> tuple[Any, dict, Any]:
    """(a Reverb server, the values a learner pushes, its train step variable) for `policy`'s variables.

    The table (default: ReverbVariableContainer's own) holds one item of {policy variables, train step};
    insert `tf.nest.flatten(values)` into it as ReverbVariableContainer.push does.
    """
    import reverb  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_agents.experimental.distributed import reverb_variable_container as rvc  # pylint: disable=import-outside-toplevel
    from tf_agents.train.utils import train_utils  # pylint: disable=import-outside-toplevel

    train_step = train_utils.create_train_step()
    values = {rvc.POLICY_KEY: policy.variables(), rvc.TRAIN_STEP_KEY: train_step}
    signature = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype), values)
    replay_table = reverb.Table(table or rvc.DEFAULT_TABLE, sampler=reverb.selectors.Uniform(),
                                remover=reverb.selectors.Fifo(), rate_limiter=reverb.rate_limiters.MinSize(1),
                                max_size=1, max_times_sampled=0, signature=signature)
    return reverb.Server([replay_table], port=None), values, train_step
