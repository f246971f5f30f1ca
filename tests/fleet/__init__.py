"""Fleets on Ray (policy_fleet), on a simulated cluster of several nodes on 127.0.0.1."""
