"""policies/py_tf_policy_test.py from the TF-Agents wheel in TF1 graph mode (its session tests run)."""

from tests.compat.collect import export

export("tf_agents.policies.py_tf_policy_test", globals(), graph_mode=True)
