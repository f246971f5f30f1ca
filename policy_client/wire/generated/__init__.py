"""Generated protobuf and gRPC code for tfa_policy_grpc.v1 and inference (OIP): do not edit.

Regenerate with `make proto` from the files in protos/.
"""
