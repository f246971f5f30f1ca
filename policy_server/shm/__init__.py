"""The shared-memory front door: same-host actors write requests into slots and ring a doorbell.

- `plane`: `SharedMemoryService.OpenSlot` and the slots' doorbell loop;
- `segments`: the POSIX shared-memory segments: named, created, and removed after servers that died.
"""
