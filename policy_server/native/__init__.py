"""The native front door: the `PolicyService` gRPC servicer (stream and unary) for actors and learners.

- `servicer`: the RPC handlers;
- `messages`: an `ActionRequest` read against the policy, and each answer as its `ActionResponse`.
"""
