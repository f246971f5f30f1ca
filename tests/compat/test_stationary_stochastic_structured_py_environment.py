"""TF-Agents bandits/environments/stationary_stochastic_structured_py_environment_test.py (wheel), served remotely."""

from tests.compat.collect import export

export("tf_agents.bandits.environments.stationary_stochastic_structured_py_environment_test", globals())
