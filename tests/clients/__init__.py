"""Tests of the clients in other languages (examples/clients/) and of the protos' buf checks."""
