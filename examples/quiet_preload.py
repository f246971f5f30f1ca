"""Imported first by the actors' forkserver (serving_demo.actor_context): quiet TF, absl and gym before they load.

The forkserver imports TensorFlow and TF-Agents once for every actor process
it forks; what those print at import time (gym's banner, TensorFlow's CUDA
registration errors) is silenced here, before them. `--verbose` demos skip it.
"""

import os

from policy_server.telemetry import logs

logs.quiet_libraries(verbose=os.environ.get("TFA_POLICY_DEMO_VERBOSE") == "1")
