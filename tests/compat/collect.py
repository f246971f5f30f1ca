"""Re-exports the TestCase classes of a TF-Agents test module from the installed wheel, unmodified.

Each `tests/compat/test_*.py` is two lines: it imports a wheel test module
and puts its TestCase classes in its own namespace, where pytest collects
them (conftest.py then swaps every PyPolicy they build for a RemotePolicy).
"""

from __future__ import annotations

import importlib
import unittest
from typing import Any

from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import


def export(module_name: str, namespace: dict[str, Any], *, graph_mode: bool = False) -> None:
    """Puts the TestCase classes defined in `module_name` into `namespace`.

    Args:
      module_name: e.g. "tf_agents.policies.random_py_policy_test".
      namespace: the calling test module's globals().
      graph_mode: run every test (setUp to tearDown) in TF1 graph mode, as
        TensorFlow's own `run_deprecated_v1` does, through a subclass of the
        same name; the wheel's class is left as it is.
    """
    module = importlib.import_module(module_name)
    for name, value in vars(module).items():
        if isinstance(value, type) and issubclass(value, unittest.TestCase) and value.__module__ == module_name:
            namespace[name] = _in_graph_mode(value) if graph_mode else value


def _in_graph_mode(cls: type) -> type:
    def run(self, result=None):
        with context.graph_mode():
            return super(graph_cls, self).run(result)

    graph_cls = type(cls.__name__, (cls,), {"run": run, "__doc__": f"{cls.__name__}, in graph mode."})
    return graph_cls
