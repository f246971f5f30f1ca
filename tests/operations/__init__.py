"""Tests of running the server: metrics, logs, the config file, the client CLI."""
