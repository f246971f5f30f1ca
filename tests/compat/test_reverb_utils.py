"""replay_buffers/reverb_utils_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

import pytest

from tests.compat.collect import export

pytestmark = pytest.mark.slow

export("tf_agents.replay_buffers.reverb_utils_test", globals())
