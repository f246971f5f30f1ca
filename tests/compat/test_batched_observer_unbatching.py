"""utils/batched_observer_unbatching_test.py from the TF-Agents wheel, every PyPolicy served remotely."""

import pytest

from tests.compat.collect import export

pytestmark = pytest.mark.slow

export("tf_agents.utils.batched_observer_unbatching_test", globals())
