"""Where an admitted request waits and is batched: the policy's queue, its batch loop and its inference thread.

- `batching`: the accepted `Request`, and batching as pure functions (stack, pad, split);
- `fair_queue`: the queue, whose batches share their rows fairly between sources;
- `scheduler`: the batch loop that closes batches and calls the backend;
- `latency`: tunes the batch delay to a latency target;
- `outcomes`: what a policy's code returned or raised, carried back as a value;
- `sessions`: server-held recurrent state, one entry per open session;
- `function_calls`: calls of a policy's other functions (SavedModel), batched where they take rows.
"""
