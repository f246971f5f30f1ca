"""The wire layer of tfa-policy-grpc: what travels, and how, shared by client and server.

Public and documented; imports numpy, protobuf, grpcio and dm-tree only,
never TensorFlow.

- `generated`: the protobuf / gRPC code of `protos/` (nothing hand-written).
- `tensors`, `specs`, `nests`, `steps`: `*_to_proto` / `*_from_proto` pairs
  for arrays, array specs, nests and TF-Agents' step tuples and policy specs.
- `namedtuples`: the named tuple and spec classes the codec decodes into.
- `nest_plan`, `step_plan`: spec nests compiled once (the hot path's
  check, encode and decode), one nest, and a policy's request and answer.
- `addresses`: gRPC targets and bind addresses (the loopback test).
- `spec_check`: checks a nest of arrays against a nest of specs.
- `errors`, `status`: the one exception vocabulary, and its mapping to the
  gRPC status with google.rpc.Status details.
- `variables`: how a weight push is cut into slices.
- `standins`: numpy-only ArraySpec / BoundedArraySpec / TimeStep / PolicyStep.
"""

from policy_client.wire import errors, status
from policy_client.wire.errors import (CodecError, FieldError, PolicyGrpcError, RemoteError,
                                       SpecMismatchError)
from policy_client.wire.generated import policy_service_pb2, policy_service_pb2_grpc, types_pb2
from policy_client.wire.nests import MAX_NEST_DEPTH, nest_from_proto, nest_to_proto, write_nest
from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes, register_namedtuple
from policy_client.wire.spec_check import check_nest
from policy_client.wire.specs import is_spec, spec_from_proto, spec_to_proto
from policy_client.wire.standins import ArraySpec, BoundedArraySpec, PolicySpecs
from policy_client.wire.steps import (policy_specs_from_proto, policy_specs_to_proto, policy_step_from_proto,
                                      policy_step_to_proto, time_step_from_proto, time_step_spec_from_proto,
                                      time_step_spec_to_proto, time_step_to_proto, write_policy_step,
                                      write_time_step)
from policy_client.wire.tensors import (MAX_FIXED_STRING_BYTES, MAX_RANK, array_from_proto, array_to_proto,
                                        dtype_from_proto, dtype_to_proto, parse_message, write_array)

SERVICE_NAME = policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
# The largest message either side sends or accepts unless told otherwise (server: --max-message-mb).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# ActionStream's flow control (ActionRequest.answers_read): a server computes at most STREAM_CAP answers ahead of
# what the client acknowledged, and says so in the stream's initial metadata (STREAM_CAP_KEY; a server without it
# counts no acknowledgements); a client keeps at most STREAM_CAP requests of a stream unanswered.
STREAM_CAP = 16
STREAM_CAP_KEY = "tfa-stream-cap"

__all__ = [
    "ArraySpec", "BoundedArraySpec", "CodecError", "DEFAULT_MAX_MESSAGE_BYTES", "FieldError", "MAX_FIXED_STRING_BYTES", "MAX_NEST_DEPTH",
    "MAX_RANK", "PolicyGrpcError", "PolicySpecs", "NAMED_TYPES", "RemoteError", "SERVICE_NAME", "STREAM_CAP", "STREAM_CAP_KEY", "SpecMismatchError",
    "NamedTupleTypes", "array_from_proto", "array_to_proto", "check_nest", "dtype_from_proto", "dtype_to_proto",
    "errors", "is_spec", "nest_from_proto", "nest_to_proto", "parse_message", "policy_service_pb2",
    "policy_service_pb2_grpc", "policy_specs_from_proto", "policy_specs_to_proto", "policy_step_from_proto",
    "policy_step_to_proto", "register_namedtuple", "spec_from_proto", "spec_to_proto", "status",
    "time_step_from_proto", "time_step_spec_from_proto", "time_step_spec_to_proto", "time_step_to_proto",
    "types_pb2", "write_array", "write_nest", "write_policy_step", "write_time_step",
]
