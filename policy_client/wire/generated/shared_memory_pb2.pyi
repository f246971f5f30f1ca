from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OpenSlotRequest(_message.Message):
    __slots__ = ("policy", "max_rows")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    policy: str
    max_rows: int
    def __init__(self, policy: _Optional[str] = ..., max_rows: _Optional[int] = ...) -> None: ...

class SlotTensor(_message.Message):
    __slots__ = ("path", "dtype", "shape", "offset")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    path: str
    dtype: _types_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    def __init__(self, path: _Optional[str] = ..., dtype: _Optional[_Union[_types_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ...) -> None: ...

class OpenSlotResponse(_message.Message):
    __slots__ = ("segment", "segment_bytes", "socket_path", "max_rows", "request_tensors", "answer_tensors", "error_offset", "error_bytes", "policy")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOCKET_PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TENSORS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TENSORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ERROR_BYTES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    segment: str
    segment_bytes: int
    socket_path: str
    max_rows: int
    request_tensors: _containers.RepeatedCompositeFieldContainer[SlotTensor]
    answer_tensors: _containers.RepeatedCompositeFieldContainer[SlotTensor]
    error_offset: int
    error_bytes: int
    policy: str
    def __init__(self, segment: _Optional[str] = ..., segment_bytes: _Optional[int] = ..., socket_path: _Optional[str] = ..., max_rows: _Optional[int] = ..., request_tensors: _Optional[_Iterable[_Union[SlotTensor, _Mapping]]] = ..., answer_tensors: _Optional[_Iterable[_Union[SlotTensor, _Mapping]]] = ..., error_offset: _Optional[int] = ..., error_bytes: _Optional[int] = ..., policy: _Optional[str] = ...) -> None: ...
