from google.rpc import status_pb2 as _status_pb2
from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SlotFallback(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_FALLBACK_UNSPECIFIED: _ClassVar[SlotFallback]
    SLOT_FALLBACK_NO_PLAN_YET: _ClassVar[SlotFallback]
    SLOT_FALLBACK_NOT_CONFORMING: _ClassVar[SlotFallback]
    SLOT_FALLBACK_AS_LOCAL: _ClassVar[SlotFallback]
    SLOT_FALLBACK_SEEDED_AS_LOCAL: _ClassVar[SlotFallback]
    SLOT_FALLBACK_NO_SLOT: _ClassVar[SlotFallback]
    SLOT_FALLBACK_SLOT_BUSY: _ClassVar[SlotFallback]
    SLOT_FALLBACK_SLOT_BROKEN: _ClassVar[SlotFallback]
    SLOT_FALLBACK_OLDER_THAN_MIN_VERSION: _ClassVar[SlotFallback]
    SLOT_FALLBACK_SERVER_STOPPING: _ClassVar[SlotFallback]
    SLOT_FALLBACK_ANSWERS_TOO_LARGE: _ClassVar[SlotFallback]
    SLOT_FALLBACK_ASYNC: _ClassVar[SlotFallback]
    SLOT_FALLBACK_SESSION: _ClassVar[SlotFallback]

class InputMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_MODE_UNSPECIFIED: _ClassVar[InputMode]
    INPUT_MODE_STRICT: _ClassVar[InputMode]
    INPUT_MODE_AS_LOCAL: _ClassVar[InputMode]
SLOT_FALLBACK_UNSPECIFIED: SlotFallback
SLOT_FALLBACK_NO_PLAN_YET: SlotFallback
SLOT_FALLBACK_NOT_CONFORMING: SlotFallback
SLOT_FALLBACK_AS_LOCAL: SlotFallback
SLOT_FALLBACK_SEEDED_AS_LOCAL: SlotFallback
SLOT_FALLBACK_NO_SLOT: SlotFallback
SLOT_FALLBACK_SLOT_BUSY: SlotFallback
SLOT_FALLBACK_SLOT_BROKEN: SlotFallback
SLOT_FALLBACK_OLDER_THAN_MIN_VERSION: SlotFallback
SLOT_FALLBACK_SERVER_STOPPING: SlotFallback
SLOT_FALLBACK_ANSWERS_TOO_LARGE: SlotFallback
SLOT_FALLBACK_ASYNC: SlotFallback
SLOT_FALLBACK_SESSION: SlotFallback
INPUT_MODE_UNSPECIFIED: InputMode
INPUT_MODE_STRICT: InputMode
INPUT_MODE_AS_LOCAL: InputMode

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("name", "version", "backend", "stateful")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    STATEFUL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    backend: str
    stateful: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., backend: _Optional[str] = ..., stateful: bool = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyInfo]
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyInfo, _Mapping]]] = ...) -> None: ...

class GetSpecsRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: str
    def __init__(self, policy: _Optional[str] = ...) -> None: ...

class GetSpecsResponse(_message.Message):
    __slots__ = ("specs", "version", "policy", "backend")
    SPECS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    specs: _types_pb2.PolicySpecs
    version: int
    policy: str
    backend: str
    def __init__(self, specs: _Optional[_Union[_types_pb2.PolicySpecs, _Mapping]] = ..., version: _Optional[int] = ..., policy: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class GetInitialStateRequest(_message.Message):
    __slots__ = ("policy", "batch_size", "input_mode")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUT_MODE_FIELD_NUMBER: _ClassVar[int]
    policy: str
    batch_size: int
    input_mode: InputMode
    def __init__(self, policy: _Optional[str] = ..., batch_size: _Optional[int] = ..., input_mode: _Optional[_Union[InputMode, str]] = ...) -> None: ...

class GetInitialStateResponse(_message.Message):
    __slots__ = ("state", "version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.Nest
    version: int
    def __init__(self, state: _Optional[_Union[_types_pb2.Nest, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class ActionRequest(_message.Message):
    __slots__ = ("policy", "time_step", "policy_state", "batch_size", "seed", "request_id", "input_mode", "any_time_step", "min_version", "session", "answers_read", "slot_fallback")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TIME_STEP_FIELD_NUMBER: _ClassVar[int]
    POLICY_STATE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_MODE_FIELD_NUMBER: _ClassVar[int]
    ANY_TIME_STEP_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_READ_FIELD_NUMBER: _ClassVar[int]
    SLOT_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    policy: str
    time_step: _types_pb2.TimeStep
    policy_state: _types_pb2.Nest
    batch_size: int
    seed: int
    request_id: int
    input_mode: InputMode
    any_time_step: _types_pb2.Nest
    min_version: int
    session: Session
    answers_read: int
    slot_fallback: SlotFallback
    def __init__(self, policy: _Optional[str] = ..., time_step: _Optional[_Union[_types_pb2.TimeStep, _Mapping]] = ..., policy_state: _Optional[_Union[_types_pb2.Nest, _Mapping]] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., request_id: _Optional[int] = ..., input_mode: _Optional[_Union[InputMode, str]] = ..., any_time_step: _Optional[_Union[_types_pb2.Nest, _Mapping]] = ..., min_version: _Optional[int] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., answers_read: _Optional[int] = ..., slot_fallback: _Optional[_Union[SlotFallback, str]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "start", "end")
    ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    id: str
    start: bool
    end: bool
    def __init__(self, id: _Optional[str] = ..., start: bool = ..., end: bool = ...) -> None: ...

class ActionResponse(_message.Message):
    __slots__ = ("policy_step", "version", "request_id", "error")
    POLICY_STEP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    policy_step: _types_pb2.PolicyStep
    version: int
    request_id: int
    error: _status_pb2.Status
    def __init__(self, policy_step: _Optional[_Union[_types_pb2.PolicyStep, _Mapping]] = ..., version: _Optional[int] = ..., request_id: _Optional[int] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: str
    def __init__(self, policy: _Optional[str] = ...) -> None: ...

class PolicyStats(_message.Message):
    __slots__ = ("policy", "version", "requests", "rows", "batches", "mean_batch_size", "errors", "queue_wait_ms_p50", "queue_wait_ms_p99", "inference_ms_p50", "inference_ms_p99", "queue_depth", "open_sessions", "shared_memory_slots")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_P50_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_P99_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_P50_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_P99_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    OPEN_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_SLOTS_FIELD_NUMBER: _ClassVar[int]
    policy: str
    version: int
    requests: int
    rows: int
    batches: int
    mean_batch_size: float
    errors: int
    queue_wait_ms_p50: float
    queue_wait_ms_p99: float
    inference_ms_p50: float
    inference_ms_p99: float
    queue_depth: int
    open_sessions: int
    shared_memory_slots: int
    def __init__(self, policy: _Optional[str] = ..., version: _Optional[int] = ..., requests: _Optional[int] = ..., rows: _Optional[int] = ..., batches: _Optional[int] = ..., mean_batch_size: _Optional[float] = ..., errors: _Optional[int] = ..., queue_wait_ms_p50: _Optional[float] = ..., queue_wait_ms_p99: _Optional[float] = ..., inference_ms_p50: _Optional[float] = ..., inference_ms_p99: _Optional[float] = ..., queue_depth: _Optional[int] = ..., open_sessions: _Optional[int] = ..., shared_memory_slots: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyStats]
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyStats, _Mapping]]] = ...) -> None: ...

class VariableSlice(_message.Message):
    __slots__ = ("index", "name", "dtype", "shape", "offset", "content")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    dtype: _types_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    content: bytes
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., dtype: _Optional[_Union[_types_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ..., content: _Optional[bytes] = ...) -> None: ...

class PushVariablesRequest(_message.Message):
    __slots__ = ("policy", "version", "num_variables", "slices")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    policy: str
    version: int
    num_variables: int
    slices: _containers.RepeatedCompositeFieldContainer[VariableSlice]
    def __init__(self, policy: _Optional[str] = ..., version: _Optional[int] = ..., num_variables: _Optional[int] = ..., slices: _Optional[_Iterable[_Union[VariableSlice, _Mapping]]] = ...) -> None: ...

class PushVariablesResponse(_message.Message):
    __slots__ = ("version", "num_variables", "num_bytes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    version: int
    num_variables: int
    num_bytes: int
    def __init__(self, version: _Optional[int] = ..., num_variables: _Optional[int] = ..., num_bytes: _Optional[int] = ...) -> None: ...

class GetVariablesRequest(_message.Message):
    __slots__ = ("policy", "include_values")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VALUES_FIELD_NUMBER: _ClassVar[int]
    policy: str
    include_values: bool
    def __init__(self, policy: _Optional[str] = ..., include_values: bool = ...) -> None: ...

class VariableInfo(_message.Message):
    __slots__ = ("index", "name", "dtype", "shape", "value")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    dtype: _types_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    value: _types_pb2.Tensor
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., dtype: _Optional[_Union[_types_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., value: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GetVariablesResponse(_message.Message):
    __slots__ = ("version", "variables")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    version: int
    variables: _containers.RepeatedCompositeFieldContainer[VariableInfo]
    def __init__(self, version: _Optional[int] = ..., variables: _Optional[_Iterable[_Union[VariableInfo, _Mapping]]] = ...) -> None: ...

class LoadCheckpointRequest(_message.Message):
    __slots__ = ("policy", "path", "version")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    policy: str
    path: str
    version: int
    def __init__(self, policy: _Optional[str] = ..., path: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class LoadCheckpointResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ListFunctionsRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: str
    def __init__(self, policy: _Optional[str] = ...) -> None: ...

class TensorSignature(_message.Message):
    __slots__ = ("path", "dtype", "shape", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    dtype: _types_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    name: str
    def __init__(self, path: _Optional[str] = ..., dtype: _Optional[_Union[_types_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., name: _Optional[str] = ...) -> None: ...

class FunctionInfo(_message.Message):
    __slots__ = ("name", "inputs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSignature]
    def __init__(self, name: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorSignature, _Mapping]]] = ...) -> None: ...

class ListFunctionsResponse(_message.Message):
    __slots__ = ("functions", "version")
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionInfo]
    version: int
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionInfo, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class CallFunctionRequest(_message.Message):
    __slots__ = ("policy", "function", "args")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    policy: str
    function: str
    args: _types_pb2.Nest
    def __init__(self, policy: _Optional[str] = ..., function: _Optional[str] = ..., args: _Optional[_Union[_types_pb2.Nest, _Mapping]] = ...) -> None: ...

class CallFunctionResponse(_message.Message):
    __slots__ = ("result", "version")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.Nest
    version: int
    def __init__(self, result: _Optional[_Union[_types_pb2.Nest, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...
