"""Policy server of tfa-policy-grpc: backends, dynamic batching, the gRPC service and CLI."""
