"""The fault suite (issue 12): fuzzing, overload, SIGKILL / SIGTERM restarts, large messages, idle streams.

Everything here is bounded in count and time and stops by itself. The fast
subset runs in `make test` (tests not marked slow); `make reliability`
(`python -m tests.reliability`) runs the full set and prints the figures
table. Subprocess servers run in their own process group, die with the
process that started them (PR_SET_PDEATHSIG) and are killed in a `finally`.
"""
