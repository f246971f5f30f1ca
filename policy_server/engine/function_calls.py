"""Calls of a policy's other functions (a SavedModel's `get_metadata` and registered functions), batched where
their saved signature allows.

A function whose every input has a leading dimension of any size (what
`PolicySaver.register_function` saves by default: `outer_dims=(None,)`) takes
rows: calls that arrive while one is running are concatenated along that
dimension and run as one call, and each caller gets its own rows of the
result, as the scheduler does for actions. Calls run on the policy's
inference thread between two batches (`BatchScheduler.run_exclusive`).

Anything that does not fit stays one call each: other signatures, arguments
whose structure, dtypes or trailing shapes differ from the others', and a
function whose result has no leading dimension of the rows it was given (it
is then called one call at a time from then on; the calls of that batch run
again one by one, so a function that changes state when called should be
saved with `outer_dims=()`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import tree

from policy_server.backends.base import Backend
from policy_server.engine.scheduler import BatchScheduler


class FunctionCalls:
    """Runs the functions of one hosted policy, batching concurrent calls of a row-taking function.

    Args:
      backend: the policy (its `functions()` and `call_function`).
      scheduler: the policy's scheduler (calls run between its batches).
    """

    def __init__(self, backend: Backend, scheduler: BatchScheduler):
        self.backend = backend
        self.scheduler = scheduler
        self.calls_run: list[tuple[str, int]] = []  # (function, callers served by one execution), for tests
        self._pending: dict[str, list[tuple[tuple, asyncio.Future]]] = {}
        self._running: set[str] = set()
        self._one_by_one: set[str] = set()

    async def call(self, name: str, args: tuple) -> Any:
        """The function's result for `args` (numpy), once its turn (and batch) came."""
        future = asyncio.get_running_loop().create_future()
        self._pending.setdefault(name, []).append((args, future))
        if name not in self._running:
            self._running.add(name)
            asyncio.ensure_future(self._drain(name))
        return await future

    def _takes_rows(self, name: str) -> bool:
        signature = self.backend.functions().get(name) or []
        return bool(signature) and name not in self._one_by_one and all(
            t.shape and t.shape[0] is None for t in signature)

    async def _drain(self, name: str) -> None:
        try:
            while self._pending.get(name):
                waiting, self._pending[name] = self._pending[name], []
                groups = _groups(waiting) if self._takes_rows(name) else [[w] for w in waiting]
                for group in groups:
                    await self._run(name, group)
        finally:
            self._running.discard(name)

    async def _run(self, name: str, group: list[tuple[tuple, asyncio.Future]]) -> None:
        if len(group) > 1:
            rows = [len(tree.flatten(args)[0]) for args, _ in group]
            joined = tree.map_structure(lambda *leaves: np.concatenate(leaves), *(args for args, _ in group))
            try:
                result = await self.scheduler.run_exclusive(lambda: self.backend.call_function(name, joined))
            except Exception:  # pylint: disable=broad-except  # whose call raised is unknown: each runs alone
                result = None
            parts = _split(result, rows) if result is not None else None
            if parts is not None:
                self.calls_run.append((name, len(group)))
                for (_, future), part in zip(group, parts):
                    if not future.done():
                        future.set_result(part)
                return
            if result is not None:
                self._one_by_one.add(name)  # its result has no rows to split: one call at a time from now on
        for args, future in group:
            try:
                result = await self.scheduler.run_exclusive(lambda args=args: self.backend.call_function(name, args))
            except Exception as e:  # pylint: disable=broad-except  # the caller's answer
                if not future.done():
                    future.set_exception(e)
                continue
            self.calls_run.append((name, 1))
            if not future.done():
                future.set_result(result)


def _groups(waiting: list[tuple[tuple, asyncio.Future]]) -> list[list[tuple[tuple, asyncio.Future]]]:
    """The calls, grouped by the structure, dtypes and trailing shapes of their arguments (rows may differ)."""
    groups: dict[Any, list] = {}
    for args, future in waiting:
        leaves = tree.flatten(args)
        if not leaves or any(not isinstance(x, np.ndarray) or x.ndim == 0 for x in leaves) or \
                len({len(x) for x in leaves}) != 1:
            groups[id(future)] = [(args, future)]  # nothing to concatenate: alone
            continue
        key = (tree.map_structure(lambda _: None, args).__repr__(),
               tuple((x.dtype.str, x.shape[1:]) for x in leaves))
        groups.setdefault(key, []).append((args, future))
    return list(groups.values())


def _split(result: Any, rows: list[int]) -> list[Any] | None:
    """Each caller's rows of a joined call's result, or None when some leaf has no leading dimension of them."""
    total = sum(rows)
    leaves = tree.flatten(result)
    if not leaves or any(np.ndim(x) == 0 or len(x) != total for x in leaves):
        return None
    bounds = np.cumsum([0, *rows])
    return [tree.map_structure(lambda x, a=a, b=b: np.asarray(x)[a:b], result) for a, b in zip(bounds, bounds[1:])]
