"""The Open Inference Protocol (KServe v2, `inference.GRPCInferenceService`): a second front door to the policies.

- `mapping`: TF-Agents nests <-> named tensors (the one documented mapping);
- `tensors`: OIP datatypes and raw / typed tensor contents;
- `infer`: one ModelInferRequest at the admission seam (client-held state,
  or a server-held session: `policy_server.engine.sessions`);
- `servicer`: the RPC handlers (health, metadata, ModelInfer, Triton's
  ModelStreamInfer).
"""

from __future__ import annotations

from typing import Callable

import grpc

from policy_client.wire.generated import grpc_predict_v2_pb2 as oip_pb
from policy_client.wire.generated import triton_streaming_pb2 as stream_pb
from policy_server import services
from policy_server.admission import Admission
from policy_server.oip.servicer import SERVICE_NAME, OipServicer
from policy_server.registry import Registry

__all__ = ["SERVICE_NAME", "OipServicer", "add_to_server"]


def add_to_server(server: grpc.aio.Server, registry: Registry, admission: Admission,
                  ready: Callable[[], bool] | None = None, max_message_bytes: int | None = None) -> str:
    """Serves the OIP service (and Triton's ModelStreamInfer) for `registry` on `server`.

    Args:
      server: the gRPC server (the native service's: same port, interceptors, limits).
      registry: the policies to serve.
      admission: where inference requests are admitted (the server's one seam).
      ready: whether the server serves (default: every policy loaded and the registry open).
      max_message_bytes: the server's message limit (see services.add_to_server).

    Returns:
      The service's name, for health and reflection.
    """
    servicer = OipServicer(registry, admission, ready or (lambda: registry.ready))
    services.add_to_server(servicer, server, oip_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
                           extra_streams=[("ModelStreamInfer", oip_pb.ModelInferRequest, stream_pb.ModelStreamInferResponse)],
                           max_message_bytes=max_message_bytes)
    return SERVICE_NAME
