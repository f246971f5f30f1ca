from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_UINT32: _ClassVar[DType]
    DTYPE_UINT64: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_STRING: _ClassVar[DType]

class StringKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRING_KIND_OBJECT: _ClassVar[StringKind]
    STRING_KIND_BYTES: _ClassVar[StringKind]
    STRING_KIND_UNICODE: _ClassVar[StringKind]
DTYPE_UNSPECIFIED: DType
DTYPE_BOOL: DType
DTYPE_INT8: DType
DTYPE_INT16: DType
DTYPE_INT32: DType
DTYPE_INT64: DType
DTYPE_UINT8: DType
DTYPE_UINT16: DType
DTYPE_UINT32: DType
DTYPE_UINT64: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_STRING: DType
STRING_KIND_OBJECT: StringKind
STRING_KIND_BYTES: StringKind
STRING_KIND_UNICODE: StringKind

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "content", "string_val", "string_kind", "string_itemsize")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STRING_VAL_FIELD_NUMBER: _ClassVar[int]
    STRING_KIND_FIELD_NUMBER: _ClassVar[int]
    STRING_ITEMSIZE_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    content: bytes
    string_val: _containers.RepeatedScalarFieldContainer[bytes]
    string_kind: StringKind
    string_itemsize: int
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., content: _Optional[bytes] = ..., string_val: _Optional[_Iterable[bytes]] = ..., string_kind: _Optional[_Union[StringKind, str]] = ..., string_itemsize: _Optional[int] = ...) -> None: ...

class ArraySpec(_message.Message):
    __slots__ = ("name", "shape", "dtype", "bounds", "string_kind", "string_itemsize")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    STRING_KIND_FIELD_NUMBER: _ClassVar[int]
    STRING_ITEMSIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    bounds: Bounds
    string_kind: StringKind
    string_itemsize: int
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., bounds: _Optional[_Union[Bounds, _Mapping]] = ..., string_kind: _Optional[_Union[StringKind, str]] = ..., string_itemsize: _Optional[int] = ...) -> None: ...

class Bounds(_message.Message):
    __slots__ = ("minimum", "maximum")
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    minimum: Tensor
    maximum: Tensor
    def __init__(self, minimum: _Optional[_Union[Tensor, _Mapping]] = ..., maximum: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Nest(_message.Message):
    __slots__ = ("tensor", "spec", "list", "tuple", "dict", "named_tuple", "none", "scalar")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    TUPLE_FIELD_NUMBER: _ClassVar[int]
    DICT_FIELD_NUMBER: _ClassVar[int]
    NAMED_TUPLE_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    SCALAR_FIELD_NUMBER: _ClassVar[int]
    tensor: Tensor
    spec: ArraySpec
    list: NestSequence
    tuple: NestSequence
    dict: NestMapping
    named_tuple: NamedTuple
    none: NoneValue
    scalar: Scalar
    def __init__(self, tensor: _Optional[_Union[Tensor, _Mapping]] = ..., spec: _Optional[_Union[ArraySpec, _Mapping]] = ..., list: _Optional[_Union[NestSequence, _Mapping]] = ..., tuple: _Optional[_Union[NestSequence, _Mapping]] = ..., dict: _Optional[_Union[NestMapping, _Mapping]] = ..., named_tuple: _Optional[_Union[NamedTuple, _Mapping]] = ..., none: _Optional[_Union[NoneValue, _Mapping]] = ..., scalar: _Optional[_Union[Scalar, _Mapping]] = ...) -> None: ...

class Scalar(_message.Message):
    __slots__ = ("bool_value", "int_value", "float_value", "string_value", "bytes_value")
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    int_value: int
    float_value: float
    string_value: str
    bytes_value: bytes
    def __init__(self, bool_value: bool = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ...) -> None: ...

class NestSequence(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Nest]
    def __init__(self, values: _Optional[_Iterable[_Union[Nest, _Mapping]]] = ...) -> None: ...

class NestEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: Nest
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Nest, _Mapping]] = ...) -> None: ...

class NestMapping(_message.Message):
    __slots__ = ("entries", "ordered")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ORDERED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[NestEntry]
    ordered: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[NestEntry, _Mapping]]] = ..., ordered: bool = ...) -> None: ...

class NamedTuple(_message.Message):
    __slots__ = ("type_name", "fields")
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    type_name: str
    fields: _containers.RepeatedCompositeFieldContainer[NestEntry]
    def __init__(self, type_name: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[NestEntry, _Mapping]]] = ...) -> None: ...

class NoneValue(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TimeStep(_message.Message):
    __slots__ = ("step_type", "reward", "discount", "observation")
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    step_type: Tensor
    reward: Nest
    discount: Tensor
    observation: Nest
    def __init__(self, step_type: _Optional[_Union[Tensor, _Mapping]] = ..., reward: _Optional[_Union[Nest, _Mapping]] = ..., discount: _Optional[_Union[Tensor, _Mapping]] = ..., observation: _Optional[_Union[Nest, _Mapping]] = ...) -> None: ...

class PolicyStep(_message.Message):
    __slots__ = ("action", "state", "info")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    action: Nest
    state: Nest
    info: Nest
    def __init__(self, action: _Optional[_Union[Nest, _Mapping]] = ..., state: _Optional[_Union[Nest, _Mapping]] = ..., info: _Optional[_Union[Nest, _Mapping]] = ...) -> None: ...

class TimeStepSpec(_message.Message):
    __slots__ = ("step_type", "reward", "discount", "observation")
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    step_type: ArraySpec
    reward: Nest
    discount: ArraySpec
    observation: Nest
    def __init__(self, step_type: _Optional[_Union[ArraySpec, _Mapping]] = ..., reward: _Optional[_Union[Nest, _Mapping]] = ..., discount: _Optional[_Union[ArraySpec, _Mapping]] = ..., observation: _Optional[_Union[Nest, _Mapping]] = ...) -> None: ...

class PolicySpecs(_message.Message):
    __slots__ = ("time_step_spec", "action_spec", "policy_state_spec", "info_spec", "collect_data_spec")
    TIME_STEP_SPEC_FIELD_NUMBER: _ClassVar[int]
    ACTION_SPEC_FIELD_NUMBER: _ClassVar[int]
    POLICY_STATE_SPEC_FIELD_NUMBER: _ClassVar[int]
    INFO_SPEC_FIELD_NUMBER: _ClassVar[int]
    COLLECT_DATA_SPEC_FIELD_NUMBER: _ClassVar[int]
    time_step_spec: TimeStepSpec
    action_spec: Nest
    policy_state_spec: Nest
    info_spec: Nest
    collect_data_spec: Nest
    def __init__(self, time_step_spec: _Optional[_Union[TimeStepSpec, _Mapping]] = ..., action_spec: _Optional[_Union[Nest, _Mapping]] = ..., policy_state_spec: _Optional[_Union[Nest, _Mapping]] = ..., info_spec: _Optional[_Union[Nest, _Mapping]] = ..., collect_data_spec: _Optional[_Union[Nest, _Mapping]] = ...) -> None: ...
