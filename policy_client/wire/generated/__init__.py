"""Generated protobuf and gRPC code for tfa_policy_grpc.v1: do not edit.

Regenerate with `make proto` from the files in protos/.
"""
