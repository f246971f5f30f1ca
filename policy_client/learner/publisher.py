"""Learner side: push a policy's variables (any size) to a policy server."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import grpc
import numpy as np
import tree

from policy_client.transport import security
from policy_client.transport.channel import DEFAULT_TIMEOUT, make_channel
from policy_client.wire import status, tensors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from policy_client.wire.variables import DEFAULT_CHUNK_BYTES, variable_slices


def _as_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


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
      credentials: grpc.ChannelCredentials for TLS (see make_channel).
      options: extra gRPC channel options (see make_channel).
      token: the learner's bearer token, as for PolicyClient (default:
        $TFA_POLICY_TOKEN or $TFA_POLICY_TOKEN_FILE).
      token_file: a file holding the bearer token, instead of `token`.

    `address` may be a grpc:// or grpcs:// URI, as for PolicyClient.

    Raises:
      ValueError: a bad URI or token (see security.endpoint).
      OSError: a certificate or token file cannot be read.
    """

    def __init__(self, address: str, policy: str = "", *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 timeout: float = DEFAULT_TIMEOUT, credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), token: str | None = None,
                 token_file: str | None = None):
        where = security.endpoint(address, policy, credentials=credentials, token=token, token_file=token_file)
        self.address = where.target
        self.policy = where.policy
        self.chunk_bytes = chunk_bytes
        self.timeout = timeout
        self._channel = make_channel(where.target, credentials=where.credentials,
                                     options=(*where.options, *options))
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
        leaves = tree.flatten(variables)
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
            raise status.from_rpc_error(e) from e
        return response.version

    def variables(self, include_values: bool = False) -> list[dict[str, Any]]:
        """The served policy's variables: index, name, dtype, shape (and value)."""
        request = service_pb.GetVariablesRequest(policy=self.policy, include_values=include_values)
        try:
            response = self._stub.GetVariables(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            raise status.from_rpc_error(e) from e
        return [{"index": v.index, "name": v.name, "shape": tuple(v.shape),
                 "dtype": tensors.dtype_from_proto(v.dtype),
                 **({"value": tensors.array_from_proto(v.value, copy=True)} if include_values else {})}
                for v in response.variables]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "VariablePublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
