"""Learner side: push a policy's variables (any size) to a policy server."""

from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

import grpc
import numpy as np

from policy_client import codec, errors
from policy_client.client import DEFAULT_TIMEOUT, make_channel
from policy_client.generated import policy_service_pb2 as service_pb
from policy_client.generated import policy_service_pb2_grpc as service_grpc

DEFAULT_CHUNK_BYTES = 1 << 20
_KERAS_NUMBER = re.compile(r"_\d+$")


def normalize_variable_name(name: str) -> str:
    """Drops what differs between processes: Keras numbering ("dense_3") and ":0"."""
    name = name.split(":")[0]
    return "/".join(_KERAS_NUMBER.sub("", part) for part in name.split("/"))


def _flatten(nest: Any) -> list[Any]:
    """Leaves of a nest of lists, tuples and dicts, in tf.nest order (sorted keys)."""
    if isinstance(nest, dict):
        return [leaf for key in sorted(nest) for leaf in _flatten(nest[key])]
    if isinstance(nest, (list, tuple)):
        return [leaf for item in nest for leaf in _flatten(item)]
    return [nest]


def _as_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def variable_slices(values: Sequence[np.ndarray], names: Sequence[str],
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[list[service_pb.VariableSlice]]:
    """Yields lists of VariableSlice holding at most about `chunk_bytes` bytes each."""
    batch: list[service_pb.VariableSlice] = []
    size = 0
    for index, (value, name) in enumerate(zip(values, names)):
        tensor = codec.array_to_proto(value)
        content = tensor.content
        offsets = range(0, max(len(content), 1), chunk_bytes)
        for offset in offsets:
            piece = content[offset:offset + chunk_bytes]
            batch.append(service_pb.VariableSlice(index=index, name=name, dtype=tensor.dtype,
                                                  shape=tensor.shape, offset=offset, content=piece))
            size += len(piece) + 64
            if size >= chunk_bytes:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


class VariablePublisher:
    """Pushes new weights to a served policy; every actor then acts with them.

    Example:
      publisher = VariablePublisher("127.0.0.1:50051", "collect")
      publisher.push(agent.collect_policy.variables(), train_step)

    Args:
      address: gRPC target of the policy server.
      policy: the served policy's name (empty: the default policy).
      chunk_bytes: bytes per stream message (models larger than the message
        limit are sent in slices).
      timeout: deadline of a push in seconds.
      credentials, options: see make_channel.
    """

    def __init__(self, address: str, policy: str = "", *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 timeout: float = DEFAULT_TIMEOUT, credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = ()):
        self.policy = policy
        self.chunk_bytes = chunk_bytes
        self.timeout = timeout
        self._channel = make_channel(address, credentials=credentials, options=options)
        self._stub = service_grpc.PolicyServiceStub(self._channel)

    def push(self, variables: Any, version: Any) -> int:
        """Sends every variable and the version (train step); returns the version served.

        Args:
          variables: a nest (list, tuple, dict) of tf.Variables or arrays in
            the order of the served policy's `variables()`.
          version: the train step (int, numpy or tf scalar).

        Raises:
          InvalidArgumentError: the variables do not match the served policy's
            (count, name, dtype or shape); the server keeps serving the old ones.
          FailedPreconditionError: `version` is older than the one served.
          RemoteError: other failures (e.g. UnavailableError).
        """
        leaves = _flatten(variables)
        values = [_as_numpy(v) for v in leaves]
        names = [getattr(v, "name", "") for v in leaves]
        version = int(_as_numpy(version))

        def requests() -> Iterator[service_pb.PushVariablesRequest]:
            yield service_pb.PushVariablesRequest(policy=self.policy, version=version,
                                                  num_variables=len(values))
            for slices in variable_slices(values, names, self.chunk_bytes):
                yield service_pb.PushVariablesRequest(slices=slices)

        try:
            response = self._stub.PushVariables(requests(), timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e
        return response.version

    def variables(self, include_values: bool = False) -> list[dict[str, Any]]:
        """The served policy's variables: index, name, dtype, shape (and value)."""
        request = service_pb.GetVariablesRequest(policy=self.policy, include_values=include_values)
        try:
            response = self._stub.GetVariables(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e
        return [{"index": v.index, "name": v.name, "shape": tuple(v.shape),
                 "dtype": codec.dtype_from_proto(v.dtype),
                 **({"value": codec.array_from_proto(v.value, copy=True)} if include_values else {})}
                for v in response.variables]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "VariablePublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
