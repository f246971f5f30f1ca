"""Examples and demos of tfa-policy-grpc (run from a source checkout; not installed)."""
