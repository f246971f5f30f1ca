"""Policies the subprocess servers of the fault suite serve (`--factory NAME=tests.reliability.backends:...`).

Settings come from the environment, so that each server generation of a
restart scenario can say who it is: RELIABILITY_VERSION is the served
version (the bias of every EchoBackend action: `2 * observation + version`),
RELIABILITY_DELAY_MS the time each backend call sleeps (a slower model).
"""

from __future__ import annotations

import os

from tests.support.fakes import EchoBackend

VERSION_ENV = "RELIABILITY_VERSION"
DELAY_ENV = "RELIABILITY_DELAY_MS"


def _settings() -> dict:
    return {"version": int(os.environ.get(VERSION_ENV, "0")),
            "delay": float(os.environ.get(DELAY_ENV, "0")) / 1e3}


def echo() -> EchoBackend:
    """The stateful EchoBackend (state {"count": int64}, one variable "echo/bias")."""
    return EchoBackend(**_settings())


def stateless_echo() -> EchoBackend:
    """EchoBackend without a state."""
    return EchoBackend(stateful=False, **_settings())
