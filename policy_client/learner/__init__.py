"""What a learner uses: pushing weights to one server, or to every replica.

- `publisher`: `VariablePublisher`, one server;
- `fanout`: `FanOutPublisher`, every replica, in parallel.
"""
