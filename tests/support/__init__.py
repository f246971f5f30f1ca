"""Helpers shared by the tests: fake backends, server fixtures, cases."""
