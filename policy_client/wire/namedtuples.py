"""The classes the codec knows: named tuples by wire name, and the array spec classes.

A named tuple travels as its wire name (by default "module.QualifiedName")
and its field names. The receiver rebuilds it with the class registered under
that name when the fields agree; else with that class itself when its module
is already imported here and it is a named tuple with those fields (so
TF-Agents' own info tuples come back as themselves); and otherwise with a
plain `collections.namedtuple` made from the names it received. Nothing is
imported on a peer's word.

The default table (NAMED_TYPES) knows the numpy-only stand-ins of `standins` under
TF-Agents' names. `tf_agents_types.register()` adds TF-Agents' own classes
(RemotePolicy and the server call it); users register their own info or
state tuples with `register_namedtuple`.
"""

from __future__ import annotations

import collections
import sys
import threading
from typing import Any

from policy_client.wire import standins
from policy_client.wire.errors import CodecError

# Named tuple classes made up for unknown wire names; capped so that a peer
# sending ever new names cannot grow the cache without bound.
_MAX_DYNAMIC = 1024


class NamedTupleTypes:
    """Named tuple classes by wire name, and the classes specs decode into."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, type] = {}
        self._name_of: dict[type, str] = {}
        self._dynamic: dict[tuple[str, tuple[str, ...]], type] = {}
        self.array_spec: type = standins.ArraySpec
        self.bounded_array_spec: type = standins.BoundedArraySpec

    def register_namedtuple(self, cls: type, name: str | None = None) -> None:
        """Decodes named tuples sent under `name` into `cls`; encodes `cls` under `name`.

        Args:
          cls: a named tuple class (a tuple subclass with `_fields`).
          name: its wire name; defaults to "module.QualifiedName". Registering
            another class under a known name makes it the one decoded into.

        Raises:
          TypeError: `cls` is not a named tuple class.
        """
        if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
            raise TypeError(f"{cls!r} is not a named tuple class")
        name = name or f"{cls.__module__}.{cls.__qualname__}"
        with self._lock:
            self._by_name[name] = cls
            self._name_of[cls] = name

    def register_spec_classes(self, array_spec: type, bounded_array_spec: type) -> None:
        """Decodes ArraySpec messages into these classes (e.g. TF-Agents' own)."""
        self.array_spec = array_spec
        self.bounded_array_spec = bounded_array_spec

    def wire_name(self, cls: type) -> str:
        """The name `cls` travels under."""
        return self._name_of.get(cls) or f"{cls.__module__}.{cls.__qualname__}"

    def namedtuple_class(self, name: str, fields: tuple[str, ...]) -> type:
        """The class to rebuild a named tuple with.

        Raises:
          CodecError: an unregistered name whose type or field names cannot
            make a named tuple.
        """
        cls = self._by_name.get(name)
        if cls is not None and tuple(cls._fields) == fields:
            return cls
        cls = _imported_namedtuple(name, fields)
        if cls is not None:
            return cls
        key = (name, fields)
        cls = self._dynamic.get(key)
        if cls is not None:
            return cls
        class_name = name.rpartition(".")[2]
        if not class_name.isidentifier() or not all(f.isidentifier() and not f.startswith("_") for f in fields):
            raise CodecError(f"named tuple {name!r} has invalid type or field names {list(fields)}")
        try:
            cls = collections.namedtuple(class_name, fields)
        except ValueError as e:  # keywords, duplicate field names
            raise CodecError(f"named tuple {name!r} with fields {list(fields)}: {e}") from None
        with self._lock:
            if len(self._dynamic) < _MAX_DYNAMIC:
                self._dynamic[key] = cls
        return cls

    def make(self, name: str, fields: tuple[str, ...], values: Any) -> Any:
        """A named tuple of the class for (name, fields) holding `values`."""
        return self.namedtuple_class(name, fields)._make(values)


def _imported_namedtuple(name: str, fields: tuple[str, ...]) -> type | None:
    """The named tuple class `name` ("module.Qualified.Name") if its module is imported and its fields agree."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        found: Any = module
        for attr in parts[cut:]:  # vars(), not getattr(): a lazy module's __getattr__ would import
            found = vars(found).get(attr) if not attr.startswith("_") and hasattr(found, "__dict__") else None
        if isinstance(found, type) and issubclass(found, tuple) and "_fields" in vars(found) and \
                tuple(found._fields) == fields:
            return found
        return None
    return None


NAMED_TYPES = NamedTupleTypes()
for _cls, _name in ((standins.TimeStep, "tf_agents.trajectories.time_step.TimeStep"),
                    (standins.PolicyStep, "tf_agents.trajectories.policy_step.PolicyStep"),
                    (standins.Trajectory, "tf_agents.trajectories.trajectory.Trajectory")):
    NAMED_TYPES.register_namedtuple(_cls, _name)


def register_namedtuple(cls: type, name: str | None = None) -> None:
    """Registers a named tuple class in the default table, NAMED_TYPES (see NamedTupleTypes)."""
    NAMED_TYPES.register_namedtuple(cls, name)
