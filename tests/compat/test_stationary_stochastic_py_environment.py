"""bandits/environments/stationary_stochastic_py_environment_test.py, from the TF-Agents wheel, served remotely."""

from tests.compat.collect import export

export("tf_agents.bandits.environments.stationary_stochastic_py_environment_test", globals())
