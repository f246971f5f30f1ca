"""policies/policy_saver_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

import pytest

from tests.compat.collect import export

pytestmark = pytest.mark.slow

export("tf_agents.policies.policy_saver_test", globals())
