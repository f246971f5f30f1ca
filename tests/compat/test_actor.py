"""train/actor_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

from tests.compat.collect import export

export("tf_agents.train.actor_test", globals())
