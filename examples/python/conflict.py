#!/usr/bin/env python3
"""A version conflict and its details, from Python, with no generated code: the
message types come from the server's reflection service at run time.

    pip install grpcio grpcio-reflection googleapis-common-protos
    python3 examples/python/conflict.py [127.0.0.1:50051]

protobuf `Struct` numbers are doubles in every language: a flag written as 2
reads back as 2.0 here.
"""
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

channel = grpc.insecure_channel(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
service = pool.FindServiceByName("pixsim.session.v1.SessionService")
GameSession = message_factory.GetMessageClass(pool.FindMessageTypeByName("pixsim.session.v1.GameSession"))


def call(method, **fields):
    m = service.methods_by_name[method]
    Request, Response = (message_factory.GetMessageClass(t) for t in (m.input_type, m.output_type))
    rpc = channel.unary_unary(f"/{service.full_name}/{method}", Request.SerializeToString, Response.FromString)
    return rpc(Request(**fields), metadata=[("x-user-id", "7")])


s = call("CreateSession", scene_id=1, entry_node_id=10, flags={"gold": 1})
print(f"created session {s.id} at version {s.version}")
s = call("UpdateSession", session_id=s.id, flags={"gold": 2}, expected_version=1)
# Struct numbers are doubles in every language: the 2 written above reads back as 2.0.
print(f"updated to version {s.version}, flags {dict(s.flags)}")
try:
    call("UpdateSession", session_id=s.id, flags={"gold": 3}, expected_version=1)
    sys.exit("the second update at version 1 was not refused")
except grpc.RpcError as e:
    print(f"{e.code().name}: {e.details()}")
    status = status_pb2.Status.FromString(dict(e.trailing_metadata())["grpc-status-details-bin"])
    for detail in status.details:  # each a google.protobuf.Any
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            print(f"  ErrorInfo reason={info.reason} metadata={dict(sorted(info.metadata.items()))}")
        elif detail.Is(GameSession.DESCRIPTOR):
            current = GameSession()
            detail.Unpack(current)
            print(f"  current GameSession: version {current.version}, flags {dict(current.flags)}")
