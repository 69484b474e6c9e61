"""The REAPI gRPC server: one thin adapter module per service over the storage
interfaces (store.interfaces), assembled by grpc_server.build_server."""
