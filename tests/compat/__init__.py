"""TF-Agents' own tests, run with every PyPolicy served by a policy server (see README.md in this folder, and docs/exactly-like-local.md)."""
