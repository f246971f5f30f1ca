"""policies/py_epsilon_greedy_policy_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

import pytest

from tests.compat.collect import export

pytestmark = pytest.mark.slow

export("tf_agents.policies.py_epsilon_greedy_policy_test", globals())
