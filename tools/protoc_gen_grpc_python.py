"""protoc/buf plugin that writes grpc Python stubs (`*_pb2_grpc.py`).

grpcio-tools ships the gRPC generator only inside `grpc_tools.protoc`, not as a standalone
`protoc-gen-grpc_python` binary, and buf can only call plugins. This plugin bridges the two: it
hands the request's descriptors to `grpc_tools.protoc --descriptor_set_in` and returns what the
gRPC generator writes, so `buf generate` stays the one command that writes gen/.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    descriptor_set = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        (tmp_path / "set.binpb").write_bytes(descriptor_set.SerializeToString())
        out = tmp_path / "out"
        out.mkdir()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--descriptor_set_in={tmp_path / 'set.binpb'}",
                f"--grpc_python_out={out}",
                *request.file_to_generate,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            response.error = result.stderr
        else:
            for path in sorted(out.rglob("*_pb2_grpc.py")):
                generated = response.file.add()
                generated.name = str(path.relative_to(out))
                generated.content = path.read_text()
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
