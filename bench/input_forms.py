"""Client CPU per call of a PolicyClient: a time step of numpy scalars against one of 0-d arrays (issue 33).

    python -m bench.input_forms

One actor, the demo CartPole server, 2,000 calls per form, the two forms
interleaved three times (A B A B A B) over gRPC and over shared memory; prints
the medians, their spread and the ratio (target <= 1.1x), and the calls that
did not take the slot (`shm_fallbacks`: the first call, before the plans).
"""

from __future__ import annotations

import time

import numpy as np

from examples.serving_demo import start_server, stop_server
from policy_client import PolicyClient
from policy_client.wire.standins import TimeStep


def main() -> None:
    proc, address = start_server(["--demo"])
    try:
        obs = np.zeros(4, np.float32)
        forms = {"0-d arrays": TimeStep(np.array(1, np.int32), np.array(0, np.float32), np.array(1, np.float32), obs),
                 "numpy scalars": TimeStep(np.int32(1), np.float32(0), np.float32(1), obs)}
        for plane in ("grpc", "shm"):
            with PolicyClient(address, "cartpole", data_plane=plane) as client:
                for _ in range(200):
                    client.action(forms["0-d arrays"])
                out = {}
                for rep in range(3):  # interleaved: A B A B A B
                    for name, step in forms.items():
                        c0 = time.process_time()
                        for _ in range(2000):
                            client.action(step)
                        out.setdefault(name, []).append((time.process_time() - c0) / 2000 * 1e6)
                med = {k: float(np.median(v)) for k, v in out.items()}
                forms_text = ", ".join(f"{k} {v:.1f} {sorted(round(x, 1) for x in out[k])}" for k, v in med.items())
                print(f"{plane}: client CPU us/call, median of 3 interleaved reps: {forms_text}; ratio "
                      f"{med['numpy scalars'] / med['0-d arrays']:.2f}; fallbacks {client.shm_fallbacks}", flush=True)
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
