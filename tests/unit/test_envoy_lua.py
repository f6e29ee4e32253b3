"""envoy/tally.lua's list of time query parameters matches the protos (it explains the transcoder's
terse "Illegal timestamp" 400 by naming the parameter)."""

from __future__ import annotations

import importlib
import pkgutil
import re

from google.api import annotations_pb2

import tally.v1
from server.envoy import ENVOY_DIR


def timestamp_query_parameters() -> set[str]:
    names: set[str] = set()
    for module in pkgutil.iter_modules(tally.v1.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"tally.v1.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            for method in service.methods:
                if method.GetOptions().Extensions[annotations_pb2.http].body == "*":
                    continue  # no query parameters
                for field in method.input_type.fields:
                    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
                        names.add(field.json_name)
    return names


def test_lua_knows_every_time_query_parameter() -> None:
    lua = (ENVOY_DIR / "tally.lua").read_text()
    block = re.search(r"local TIME_PARAMETERS = \{(.*?)\}\n", lua, re.S)
    assert block is not None
    listed = set(re.findall(r'\["(\w+)"\] = true', block.group(1)))
    assert listed == timestamp_query_parameters()
