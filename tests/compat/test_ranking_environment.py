"""bandits/environments/ranking_environment_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

from tests.compat.collect import export

export("tf_agents.bandits.environments.ranking_environment_test", globals())
