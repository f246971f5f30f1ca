"""policies/scripted_py_policy_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

from tests.compat.collect import export

export("tf_agents.policies.scripted_py_policy_test", globals())
