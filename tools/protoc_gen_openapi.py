"""protoc/buf plugin that writes the OpenAPI 3.1 description of Tally's REST surface.

No maintained generator installs here (protoc-gen-openapi and protoc-gen-openapiv2 are Go binaries
outside our registries), and neither would know what Envoy's Lua filter does to responses. This one
describes what Envoy actually serves, from the same descriptors Envoy transcodes with:

* paths, methods, path and query parameters and request bodies from the `google.api.http` bindings,
  following the transcoder's rules (path fields bound from the URL; `body: "*"` takes every other
  field, `body: "field"` one field; the remaining scalar fields are query parameters, repeated ones
  as repeated parameters);
* JSON as the proto3 JSON mapping prints it: `json_name` (lowerCamelCase) property names, 64-bit
  integers as strings, Timestamp as a date-time string, Struct as an object, Value as anything,
  Empty as no body, google.api.HttpBody as the raw body in the content types the method declares;
* Tally's REST-only behaviour from the `(tally.v1.rest)` method option (proto/tally/v1/options.proto):
  201/202/204 success statuses, bare `items` arrays, raw body content types;
* errors as RFC 7807 application/problem+json (server/errors.py, envoy/tally.lua).

Writes tally.openapi.yaml and tally.openapi.json (the same document) into the output directory;
`make gen` runs it through `buf generate` (buf.gen.yaml).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.compiler import plugin_pb2
from google.protobuf.unknown_fields import UnknownFieldSet

TITLE = "Tally"
VERSION = "v1"
DESCRIPTION = (
    "Usage metering and entitlements with OpenMeter's REST wire format. Generated from "
    "proto/tally/v1 by tools/protoc_gen_openapi.py; do not edit."
)
# How requests authenticate (server/auth.py): an API key, or for the portal's queries a portal token,
# both as `Authorization: Bearer`. The embedded stack on loopback runs keyless, so the document
# also allows none. PORTAL_METHODS must equal server/auth.py's (tests/unit/test_rest_contract.py).
SECURITY_SCHEMES = {
    "ApiKeyAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An API key (tly_...), from `tally apikeys create` or POST /api/v1/tally/api-keys. Its scopes "
            "(ingest, read, write, admin) decide which operations it may call. Not needed where Tally "
            "runs keyless (the embedded stack on loopback)."
        ),
    },
    "PortalTokenAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A consumer portal token, from POST /api/v1/portal/tokens: one subject's usage only.",
    },
}
PORTAL_METHODS = frozenset({"tally.v1.PortalService/QueryPortalMeter", "tally.v1.PortalService/QueryPortalMeterCsv"})
REST_OPTION_FILE = "tally/v1/options.proto"
REST_OPTION_NUMBER = 51700  # (tally.v1.rest), proto/tally/v1/options.proto
REST_NULLABLE_NUMBER = 51701  # (tally.v1.rest_nullable), the same file

FD = descriptor_pb2.FieldDescriptorProto
_INT32 = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
_UINT32 = {FD.TYPE_UINT32, FD.TYPE_FIXED32}
_INT64 = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
_UINT64 = {FD.TYPE_UINT64, FD.TYPE_FIXED64}

# Well-known types, as proto3 JSON prints them.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
    ".google.protobuf.ListValue": {"type": "array", "items": {}},
    ".google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    ".google.protobuf.FieldMask": {"type": "string"},
    ".google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    ".google.protobuf.StringValue": {"type": "string"},
    ".google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    ".google.protobuf.BoolValue": {"type": "boolean"},
    ".google.protobuf.DoubleValue": {"type": "number"},
    ".google.protobuf.FloatValue": {"type": "number"},
    ".google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    ".google.protobuf.UInt32Value": {"type": "integer", "format": "int32", "minimum": 0},
    ".google.protobuf.Int64Value": {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    ".google.protobuf.UInt64Value": {"type": "string", "format": "int64", "pattern": r"^[0-9]+$"},
}
# Types a query parameter can carry (the transcoder parses them from one string).
_QUERY_MESSAGES = {
    name for name, schema in _WELL_KNOWN.items() if schema.get("type") in {"string", "number", "integer", "boolean"}
}
HTTP_BODY = ".google.api.HttpBody"
EMPTY = ".google.protobuf.Empty"

PROBLEM = "Problem"
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 7807 problem: every error Tally answers over REST.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "extensions": {
            "type": "object",
            "properties": {
                "validationErrors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                            "code": {"type": "string"},
                            "severity": {"type": "string"},
                        },
                        "required": ["field", "message"],
                    },
                },
                "conflictingEntityId": {"type": "string"},
                # OpenMeter's billing errors: the first issue's code, message and severity.
                "code": {"type": "string", "description": "The stable reason, e.g. invoice_action_not_available."},
                "message": {"type": "string"},
                "severity": {"type": "string"},
            },
        },
    },
    "required": ["type", "title", "status"],
}
_ERROR_TITLES = {
    "400": "The request is invalid; extensions.validationErrors names the fields.",
    "401": "No valid credentials.",
    "403": "The credentials do not allow this.",
    "404": "Not found.",
    "409": "Conflicts with an existing entity (extensions.conflictingEntityId).",
    "413": "Over a size limit.",
    "415": "Unsupported content type.",
    "503": "A dependency is unavailable; retry.",
}


class Generator:
    def __init__(self, request: plugin_pb2.CodeGeneratorRequest) -> None:
        self.request = request
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[tuple[str, tuple[int, ...]], str] = {}
        self.message_paths: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.schemas: dict[str, Any] = {}
        self.rest_options_class = self._rest_options_class()
        for file in request.proto_file:
            self._index_file(file)

    # --- descriptors ---------------------------------------------------------------------------

    def _rest_options_class(self) -> Any:
        pool = descriptor_pool.DescriptorPool()
        by_name = {f.name: f for f in self.request.proto_file}
        added: set[str] = set()

        def add(name: str) -> None:
            if name in added:
                return
            for dependency in by_name[name].dependency:
                add(dependency)
            pool.Add(by_name[name])
            added.add(name)

        add(REST_OPTION_FILE)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("tally.v1.RestOptions"))

    def _index_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        for location in file.source_code_info.location:
            text = location.leading_comments.strip()
            if text:
                # Lines of a paragraph joined; blank lines keep paragraphs apart.
                paragraphs = re.split(r"\n\s*\n", text)
                self.comments[(file.name, tuple(location.path))] = "\n\n".join(
                    " ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs
                )
        prefix = f".{file.package}" if file.package else ""

        def walk_messages(messages: Any, scope: str, path: tuple[int, ...]) -> None:
            for index, message in enumerate(messages):
                name = f"{scope}.{message.name}"
                self.messages[name] = message
                self.message_paths[name] = (file.name, (*path, index))
                walk_messages(message.nested_type, name, (*path, index, 3))
                for enum in message.enum_type:
                    self.enums[f"{name}.{enum.name}"] = enum

        walk_messages(file.message_type, prefix, (4,))
        for enum in file.enum_type:
            self.enums[f"{prefix}.{enum.name}"] = enum

    def rest_options(self, method: descriptor_pb2.MethodDescriptorProto) -> Any:
        options = self.rest_options_class()
        for field in UnknownFieldSet(method.options):
            if field.field_number == REST_OPTION_NUMBER:
                options.MergeFromString(field.data)
        return options

    def comment(self, file: str, path: tuple[int, ...]) -> str | None:
        return self.comments.get((file, path))

    # --- schemas -------------------------------------------------------------------------------

    @staticmethod
    def schema_name(full_name: str) -> str:
        return full_name[len(".tally.v1.") :] if full_name.startswith(".tally.v1.") else full_name.lstrip(".")

    def ref(self, full_name: str) -> dict[str, Any]:
        if full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[full_name])
        name = self.schema_name(full_name)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursion (FilterString) refers to itself
            self.schemas[name] = self.message_schema(full_name)
        return {"$ref": f"#/components/schemas/{name}"}

    def is_map(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        return (
            field.label == FD.LABEL_REPEATED
            and field.type == FD.TYPE_MESSAGE
            and self.messages[field.type_name].options.map_entry
        )

    def scalar_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        kind = field.type
        if kind == FD.TYPE_MESSAGE:
            return self.ref(field.type_name)
        if kind == FD.TYPE_ENUM:
            enum = self.enums[field.type_name]
            return {"type": "string", "enum": [value.name for value in enum.value]}
        if kind in _INT32:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if kind in _UINT32:
            return {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**32 - 1}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
        if kind in _UINT64:
            return {"type": "string", "format": "int64", "pattern": r"^[0-9]+$"}
        if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return {"type": "number"}
        if kind == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if self.is_map(field):
            value = next(f for f in self.messages[field.type_name].field if f.name == "value")
            return {"type": "object", "additionalProperties": self.scalar_schema(value)}
        schema = self.scalar_schema(field)
        if field.label == FD.LABEL_REPEATED:
            return {"type": "array", "items": schema}
        return schema

    @staticmethod
    def rest_nullable(field: descriptor_pb2.FieldDescriptorProto) -> bool:
        """The field is printed as null in REST answers when unset (server/rest.py)."""
        return any(
            option.field_number == REST_NULLABLE_NUMBER and option.data == 1
            for option in UnknownFieldSet(field.options)
        )

    @staticmethod
    def behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[int]:
        return list(field.options.Extensions[field_behavior_pb2.field_behavior])

    def properties(
        self,
        full_name: str,
        skip: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> tuple[dict[str, Any], list[str]]:
        message = self.messages[full_name]
        file, path = self.message_paths[full_name]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for index, field in enumerate(message.field):
            if field.name in skip:
                continue
            schema = self.field_schema(field)
            description = self.comment(file, (*path, 2, index))
            behaviors = self.behaviors(field)
            # OpenAPI 3.1 schemas are JSON Schema 2020-12: keywords may sit beside a $ref.
            if self.rest_nullable(field):
                schema = {"anyOf": [schema, {"type": "null"}]}
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema = {**schema, "readOnly": True}
            if description:
                schema = {**schema, "description": description}
            properties[field.json_name] = schema
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.json_name)
        return properties, required

    def message_schema(self, full_name: str) -> dict[str, Any]:
        properties, required = self.properties(full_name)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        file, path = self.message_paths[full_name]
        description = self.comment(file, path)
        if description:
            schema["description"] = description
        return schema

    def body_form(self, message: str, form: int) -> dict[str, Any]:
        one = self.ref("." + message.lstrip("."))
        if form == 1:  # REST_BODY_FORM_ARRAY
            return {"type": "array", "items": one}
        if form == 2:  # REST_BODY_FORM_ONE_OR_ARRAY
            return {"oneOf": [one, {"type": "array", "items": one}]}
        return one

    # --- operations ----------------------------------------------------------------------------

    def query_parameters(self, full_name: str, bound: set[str]) -> list[dict[str, Any]]:
        parameters = []
        message = self.messages[full_name]
        file, path = self.message_paths[full_name]
        for index, field in enumerate(message.field):
            if field.name in bound or self.is_map(field):
                continue
            if field.type == FD.TYPE_MESSAGE and field.type_name not in _QUERY_MESSAGES:
                continue  # the transcoder cannot read a message from one query string
            schema = self.field_schema(field)
            parameter: dict[str, Any] = {"name": field.json_name, "in": "query", "schema": schema}
            if field.label == FD.LABEL_REPEATED:
                parameter["style"] = "form"
                parameter["explode"] = True
            if field_behavior_pb2.REQUIRED in self.behaviors(field):
                parameter["required"] = True
            description = self.comment(file, (*path, 2, index))
            if description:
                parameter["description"] = description
            parameters.append(parameter)
        return parameters

    def operation(
        self,
        service: descriptor_pb2.ServiceDescriptorProto,
        method: descriptor_pb2.MethodDescriptorProto,
        comment: str | None,
        verb: str,
        template: str,
        body: str,
        operation_id: str,
    ) -> tuple[str, dict[str, Any]]:
        rest = self.rest_options(method)
        request_type = method.input_type
        fields = {f.name: f for f in self.messages[request_type].field} if request_type in self.messages else {}
        path_fields = re.findall(r"\{([^}=]+)(?:=[^}]*)?\}", template)

        def rename(match: re.Match[str]) -> str:
            name = match.group(1)
            top = fields.get(name.split(".")[0])
            return "{" + (top.json_name if top is not None and "." not in name else name) + "}"

        openapi_path = re.sub(r"\{([^}=]+)(?:=[^}]*)?\}", rename, template)
        operation: dict[str, Any] = {"operationId": operation_id, "tags": [service.name]}
        if comment:
            first = re.split(r"(?<=\.)\s", comment, maxsplit=1)[0]
            operation["summary"] = first
            if first != comment:
                operation["description"] = comment
        parameters: list[dict[str, Any]] = []
        for name in path_fields:
            field = fields.get(name.split(".")[0])
            schema = self.scalar_schema(field) if field is not None and "." not in name else {"type": "string"}
            parameters.append(
                {
                    "name": field.json_name if field is not None and "." not in name else name,
                    "in": "path",
                    "required": True,
                    "schema": {**schema, "minLength": 1} if schema.get("type") == "string" else schema,
                }
            )
        bound = {name.split(".")[0] for name in path_fields}
        if request_type == HTTP_BODY:
            if not rest.request_bodies:
                raise ValueError(f"{method.name}: an HttpBody request needs (tally.v1.rest).request_bodies")
            content = {
                b.content_type: {"schema": self.body_form(b.message, b.form) if b.message else {"type": "string"}}
                for b in rest.request_bodies
            }
            operation["requestBody"] = {"required": True, "content": content}
        elif body == "*":
            properties, required = self.properties(request_type, skip=bound)
            schema: dict[str, Any]
            if bound:
                schema = {"type": "object", "properties": properties}
                if required:
                    schema["required"] = required
            else:
                schema = self.ref(request_type)
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        elif body:
            field = fields[body]
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self.field_schema(field)}},
            }
            parameters.extend(self.query_parameters(request_type, bound | {body}))
        elif request_type in self.messages:
            parameters.extend(self.query_parameters(request_type, bound))
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = self.responses(method, rest, verb, bool(path_fields))
        return openapi_path, operation

    def responses(
        self, method: descriptor_pb2.MethodDescriptorProto, rest: Any, verb: str, has_path: bool
    ) -> dict[str, Any]:
        status = str(rest.status or 200)
        success: dict[str, Any] = {"description": "Success."}
        if status == "204" or (method.output_type == EMPTY and status == "200"):
            success["description"] = "Success; no body."
        else:
            content: dict[str, Any] = {}
            if method.output_type != HTTP_BODY:
                schema = self.ref(method.output_type)
                items = next((f for f in self.messages[method.output_type].field if f.json_name == "items"), None)
                if rest.shape and (items is None or items.label != FD.LABEL_REPEATED):
                    raise ValueError(f"{method.name}: an array shape needs a repeated `items` field in the response")
                if rest.shape == 1:  # REST_SHAPE_ARRAY
                    schema = self.field_schema(items)  # type: ignore[arg-type]
                elif rest.shape == 2:  # REST_SHAPE_ARRAY_UNLESS_PAGED
                    schema = {"oneOf": [self.field_schema(items), schema]}  # type: ignore[arg-type]
                content["application/json"] = {"schema": schema}
            for b in rest.response_bodies:
                content[b.content_type] = {
                    "schema": self.body_form(b.message, b.form) if b.message else {"type": "string"}
                }
            if not content:
                raise ValueError(f"{method.name}: an HttpBody response needs (tally.v1.rest).response_bodies")
            success["content"] = content
        responses: dict[str, Any] = {status: success}
        codes = ["400", "401", "403"]
        if has_path:
            codes.append("404")
        if verb in ("post", "put", "patch") and method.input_type != HTTP_BODY:
            codes.append("409")
        if method.input_type == HTTP_BODY:
            codes += ["413", "415", "503"]
        for code in codes:
            responses[code] = {"$ref": f"#/components/responses/Error{code}"}
        responses["default"] = {"$ref": "#/components/responses/Error"}
        return responses

    def document(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        tags = []
        for file in self.request.proto_file:
            if file.name not in self.request.file_to_generate:
                continue
            for s_index, service in enumerate(file.service):
                service_comment = self.comment(file.name, (6, s_index))
                tags.append({"name": service.name, **({"description": service_comment} if service_comment else {})})
                for m_index, method in enumerate(service.method):
                    if not method.options.HasExtension(annotations_pb2.http):
                        continue
                    rule = method.options.Extensions[annotations_pb2.http]
                    comment = self.comment(file.name, (6, s_index, 2, m_index))
                    bindings = [rule, *rule.additional_bindings]
                    for number, binding in enumerate(bindings):
                        verb, template = _verb_and_path(binding)
                        operation_id = method.name if number == 0 else f"{method.name}{verb.capitalize()}{number}"
                        path, operation = self.operation(
                            service, method, comment, verb, template, binding.body, operation_id
                        )
                        if f"{file.package}.{service.name}/{method.name}" in PORTAL_METHODS:
                            operation["security"] = [{"PortalTokenAuth": []}]
                        if verb in paths.setdefault(path, {}):
                            raise ValueError(f"{verb.upper()} {path} is bound twice")
                        paths[path][verb] = operation
        responses = {
            f"Error{code}": {
                "description": text,
                "content": {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{PROBLEM}"}}},
            }
            for code, text in _ERROR_TITLES.items()
        }
        responses["Error"] = {
            "description": "An error.",
            "content": {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{PROBLEM}"}}},
        }
        schemas = {name: self.schemas[name] for name in sorted(self.schemas)}
        schemas[PROBLEM] = _PROBLEM_SCHEMA
        return {
            "openapi": "3.1.0",
            "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
            "tags": sorted(tags, key=lambda tag: tag["name"]),
            "security": [{"ApiKeyAuth": []}, {}],
            "paths": {path: paths[path] for path in sorted(paths)},
            "components": {"schemas": schemas, "responses": responses, "securitySchemes": SECURITY_SCHEMES},
        }


class _NoAliases(yaml.SafeDumper):
    """Writes a schema used twice in full both times: plain YAML, no &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.lower(), rule.custom.path
    if kind is None:
        raise ValueError("an http rule without a pattern")
    return kind, getattr(rule, kind)


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    try:
        document = Generator(request).document()
    except (ValueError, KeyError) as exc:
        response.error = f"protoc-gen-openapi: {exc}"
    else:
        yaml_file = response.file.add()
        yaml_file.name = "tally.openapi.yaml"
        yaml_file.content = (
            "# Generated by tools/protoc_gen_openapi.py from proto/tally/v1; do not edit.\n"
            + yaml.dump(document, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120)
        )
        json_file = response.file.add()
        json_file.name = "tally.openapi.json"
        json_file.content = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
