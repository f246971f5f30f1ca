"""Learner side, several replicas: push the same weights to every one and say what each now serves."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Sequence

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
      addresses: one target per replica (a list, or an "ipv4:a,b,c" list).
      policy: the served policy's name on every replica.
      **kwargs: as for VariablePublisher (chunk_bytes, timeout, credentials,
        options, token, token_file).
    """

    def __init__(self, addresses: Sequence[str] | str, policy: str = "", **kwargs: Any):
        if isinstance(addresses, str):
            scheme, _, rest = addresses.partition(":")
            addresses = [a for a in rest.split(",") if a] if scheme in ("ipv4", "ipv6") else [addresses]
        if not addresses:
            raise ValueError("FanOutPublisher needs at least one replica address")
        self.publishers = {address: VariablePublisher(address, policy, **kwargs) for address in addresses}
        self._pool = concurrent.futures.ThreadPoolExecutor(len(self.publishers), thread_name_prefix="fan-out")

    def push(self, variables: Any, version: Any) -> FanOutResult:
        """Pushes to every replica concurrently; never raises for one replica's failure."""
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
        self._pool.shutdown(wait=False)

    def __enter__(self) -> "FanOutPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
