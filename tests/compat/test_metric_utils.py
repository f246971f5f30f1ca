"""eval/metric_utils_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

from tests.compat.collect import export

export("tf_agents.eval.metric_utils_test", globals())
