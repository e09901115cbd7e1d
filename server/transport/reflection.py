"""Server reflection: grpc.reflection.v1 beside v1alpha (newer tools such as grpcurl ask v1 first).

grpcio-reflection ships only v1alpha. The two versions' messages are identical on the wire (the same
fields and numbers under another package name), so v1 is the v1alpha servicer registered under the
v1 service name.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serves reflection v1alpha and v1 for these services (and both reflection services)."""
    names = (*service_names, reflection.SERVICE_NAME, V1_SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
