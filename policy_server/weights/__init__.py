"""Where weights change: one pipeline for every new version, pushed or followed.

- `swapper`: `WeightUpdate` and the `WeightSwapper` that swaps it in between two batches;
- `push`: a learner's `PushVariables` stream, assembled and checked;
- `checkpoints`: PolicySaver checkpoint paths: found, named, checked;
- `followers`: pollers of a checkpoint directory or a Reverb variable container.
"""
