"""Learner side, several replicas: push the same weights to every one and say what each now serves."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable, Sequence

from policy_client.learner.publisher import VariablePublisher
from policy_client.wire import errors


@dataclasses.dataclass(frozen=True)
class FanOutResult:
    """What one push did on each replica.

    Attributes:
      versions: address -> the version that replica serves now (pushed ones).
      errors: address -> why the push failed there (that replica keeps its
        old weights; a later push, or its follower, brings it up to date).
    """

    versions: dict[str, int]
    errors: dict[str, errors.RemoteError]

    @property
    def complete(self) -> bool:
        """Whether every replica took the push."""
        return not self.errors


class FanOutPublisher:
    """A VariablePublisher for each of several replicas, pushing to all at once.

    Example:
      publisher = FanOutPublisher(["10.0.0.1:50051", "10.0.0.2:50051"], "collect")
      result = publisher.push(agent.collect_policy.variables(), train_step)
      assert result.complete, result.errors

    Args:
      addresses: one target per replica (a list, or an "ipv4:a,b,c" list),
        or a target source: a callable returning either, read again at every
        push (e.g. a fleet's ReplicaSet, whose replicas move when Ray restarts
        them), so each push reaches the replicas that serve then.
      policy: the served policy's name on every replica.
      **kwargs: as for VariablePublisher (chunk_bytes, timeout, credentials,
        options, token, token_file).

    Raises:
      ValueError: no replica address.
    """

    def __init__(self, addresses: Sequence[str] | str | Callable[[], Sequence[str] | str], policy: str = "",
                 **kwargs: Any):
        self._source = addresses if callable(addresses) else None
        self._policy, self._kwargs = policy, kwargs
        self.publishers: dict[str, VariablePublisher] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._update(_split(addresses() if self._source is not None else addresses))

    def _update(self, addresses: list[str]) -> None:
        """Publishers for exactly these replicas (new ones opened, gone ones closed)."""
        if not addresses:
            raise ValueError("FanOutPublisher needs at least one replica address")
        for gone in set(self.publishers) - set(addresses):
            self.publishers.pop(gone).close()
        for address in addresses:
            if address not in self.publishers:
                self.publishers[address] = VariablePublisher(address, self._policy, **self._kwargs)
        if self._pool is None or self._pool_size < len(self.publishers):
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool_size = len(self.publishers)
            self._pool = concurrent.futures.ThreadPoolExecutor(self._pool_size, thread_name_prefix="fan-out")

    def push(self, variables: Any, version: Any) -> FanOutResult:
        """Pushes to every replica concurrently; never raises for one replica's failure.

        Raises:
          ValueError: a target source that names no replica.
        """
        if self._source is not None:
            self._update(_split(self._source()))
        futures = {address: self._pool.submit(p.push, variables, version) for address, p in self.publishers.items()}
        versions, failures = {}, {}
        for address, future in futures.items():
            try:
                versions[address] = future.result()
            except errors.RemoteError as e:
                failures[address] = e
        return FanOutResult(versions, failures)

    def close(self) -> None:
        for publisher in self.publishers.values():
            publisher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> "FanOutPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _split(addresses: Sequence[str] | str) -> list[str]:
    """One address per replica, from a list or an "ipv4:a,b,c" / "ipv6:..." target."""
    if isinstance(addresses, str):
        scheme, _, rest = addresses.partition(":")
        return [a for a in rest.split(",") if a] if scheme in ("ipv4", "ipv6") else [addresses]
    return list(addresses)
