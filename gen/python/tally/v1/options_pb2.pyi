from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RestShape(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REST_SHAPE_UNSPECIFIED: _ClassVar[RestShape]
    REST_SHAPE_ARRAY: _ClassVar[RestShape]
    REST_SHAPE_ARRAY_UNLESS_PAGED: _ClassVar[RestShape]

class RestBodyForm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REST_BODY_FORM_UNSPECIFIED: _ClassVar[RestBodyForm]
    REST_BODY_FORM_ARRAY: _ClassVar[RestBodyForm]
    REST_BODY_FORM_ONE_OR_ARRAY: _ClassVar[RestBodyForm]
REST_SHAPE_UNSPECIFIED: RestShape
REST_SHAPE_ARRAY: RestShape
REST_SHAPE_ARRAY_UNLESS_PAGED: RestShape
REST_BODY_FORM_UNSPECIFIED: RestBodyForm
REST_BODY_FORM_ARRAY: RestBodyForm
REST_BODY_FORM_ONE_OR_ARRAY: RestBodyForm
REST_FIELD_NUMBER: _ClassVar[int]
rest: _descriptor.FieldDescriptor
REST_NULLABLE_FIELD_NUMBER: _ClassVar[int]
rest_nullable: _descriptor.FieldDescriptor

class RestOptions(_message.Message):
    __slots__ = ("status", "shape", "request_bodies", "response_bodies")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODIES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODIES_FIELD_NUMBER: _ClassVar[int]
    status: int
    shape: RestShape
    request_bodies: _containers.RepeatedCompositeFieldContainer[RestBody]
    response_bodies: _containers.RepeatedCompositeFieldContainer[RestBody]
    def __init__(self, status: _Optional[int] = ..., shape: _Optional[_Union[RestShape, str]] = ..., request_bodies: _Optional[_Iterable[_Union[RestBody, _Mapping]]] = ..., response_bodies: _Optional[_Iterable[_Union[RestBody, _Mapping]]] = ...) -> None: ...

class RestBody(_message.Message):
    __slots__ = ("content_type", "message", "form")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FORM_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    message: str
    form: RestBodyForm
    def __init__(self, content_type: _Optional[str] = ..., message: _Optional[str] = ..., form: _Optional[_Union[RestBodyForm, str]] = ...) -> None: ...
