"""The one interface every backend implements, and the nest helpers backends share."""

from __future__ import annotations

import abc
import collections.abc
import dataclasses
from typing import Any, Sequence

import numpy as np
import tree

from policy_client.wire import errors
from policy_client.wire.standins import PolicySpecs


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """Name, shape and dtype of one policy variable."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class TensorSignature:
    """One tensor of a function's input signature: where it sits in the arguments, its dtype and shape.

    Attributes:
      path: e.g. "args[0]" or "args[0]['pos']".
      dtype: its numpy dtype.
      shape: its dimensions, None for a dimension of any size.
      name: the TensorSpec's name.
    """

    path: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    name: str = ""


class UnsupportedSeedError(errors.FieldError):
    """The backend cannot honour a per-call seed (as the local policy would refuse it): a ValueError about
    field `seed`, answered INVALID_ARGUMENT."""

    def __init__(self, why: str):
        super().__init__(f"seed: {why}", "seed")


class Backend(abc.ABC):
    """A hosted policy behind one batched `action` call.

    Subclasses set `specs` (array specs), `kind`, and implement `action` and
    `initial_state`. When `batchable` is True, `action` receives every leaf with
    one outer batch dimension (rows of many requests stacked together); when
    False it receives each request exactly as the client sent it.

    Every method is called from one thread only, the scheduler's inference thread,
    between two batches; weight updates (`assign_variables`,
    `load_checkpoint`, then `version`) too, so a call never sees a mix of two
    versions and backends need no lock of their own.
    """

    kind: str = "backend"
    batchable: bool = True
    supports_seed: bool = True

    def __init__(self, specs: PolicySpecs, version: int = 0):
        self.specs = specs
        self.version = int(version)

    @abc.abstractmethod
    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        """Returns the PolicyStep (numpy nests) for `time_step` and `policy_state`.

        Raises:
          UnsupportedSeedError: a seed was given and the policy cannot use one.
        """

    def action_flat(self, leaves: list[np.ndarray], seed: int | None = None) -> Any:
        """`action` with the inputs given as the leaves of (time_step, policy_state).

        Leaves are in tf.nest order of the specs; backends that can skip
        rebuilding the nests override this.
        """
        time_step, policy_state = tree.unflatten_as(
            (self.specs.time_step_spec, self.specs.policy_state_spec), leaves)
        return self.action(time_step, policy_state, seed)

    @abc.abstractmethod
    def initial_state(self, batch_size: int | None) -> Any:
        """Returns the initial policy state (numpy nest); `()` when stateless."""

    def local_action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        """What the local TF-Agents policy's own `action` returns for these inputs, as they are.

        Inputs need not match the specs (any dtype, shape, Python scalars,
        extra or missing keys): the policy casts, ignores or raises exactly
        as it would locally (see INPUT_MODE_AS_LOCAL). The default, for
        backends without a local wrapper, calls `action`.
        """
        return self.action(time_step, policy_state, seed)

    def local_initial_state(self, batch_size: int | None) -> Any:
        """What the local policy's `get_initial_state(batch_size)` returns (default: `initial_state`)."""
        return self.initial_state(batch_size)

    def functions(self) -> dict[str, list[TensorSignature]]:
        """The policy's other callable functions and their input signatures (see `call_function`); none here."""
        return {}

    def call_function(self, name: str, args: tuple) -> Any:
        """Calls one of `functions()` with positional `args` (numpy nests); returns its result as numpy.

        Raises:
          KeyError: no such function.
        """
        raise KeyError(name)

    def variable_specs(self) -> list[VariableSpec]:
        """The policy's variables in `policy.variables()` order (empty: none)."""
        return []

    def variable_values(self) -> list[np.ndarray]:
        """Current values of the variables, in variable_specs order."""
        return []

    def assign_variables(self, values: Sequence[np.ndarray]) -> None:
        """Replaces every variable (values checked against variable_specs by the caller).

        Raises:
          NotImplementedError: the backend has no variables to update.
        """
        raise NotImplementedError(f"the {self.kind} backend has no variables to update")

    def load_checkpoint(self, path: str) -> None:
        """Loads every variable from a PolicySaver checkpoint directory.

        Raises:
          NotImplementedError: the backend cannot read such checkpoints.
        """
        raise NotImplementedError(f"the {self.kind} backend cannot load PolicySaver checkpoints")

    @property
    def loads_checkpoints(self) -> bool:
        """Whether `load_checkpoint` is implemented."""
        return type(self).load_checkpoint is not Backend.load_checkpoint


def to_numpy(nest: Any) -> Any:
    """The nest in plain containers with every tensor leaf converted to numpy."""
    return tree.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, plain_nest(nest))


def plain_nest(nest: Any) -> Any:
    """Copies a nest into plain dicts, lists and tuples.

    Keras attribute tracking wraps dicts and lists held by layers and policies
    (`_DictWrapper`, `ListWrapper`); on the wire they are plain containers.
    dm-tree rebuilds such wrappers as they are (and cannot rebuild some), so
    this one walk stays.
    """
    nest = getattr(nest, "__wrapped__", nest)
    if isinstance(nest, tuple) and hasattr(type(nest), "_fields"):
        return type(nest)(*(plain_nest(v) for v in nest))
    if isinstance(nest, collections.abc.Mapping):
        items = ((k, plain_nest(v)) for k, v in nest.items())
        return collections.OrderedDict(items) if isinstance(nest, collections.OrderedDict) else dict(items)
    if isinstance(nest, tuple):
        return tuple(plain_nest(v) for v in nest)
    if isinstance(nest, list):
        return [plain_nest(v) for v in nest]
    return nest


def specs_of(policy: Any) -> PolicySpecs:
    """Returns the array specs of a py_policy or tf_policy, in plain containers."""
    from tf_agents.specs import tensor_spec  # pylint: disable=import-outside-toplevel

    def arrays(spec: Any) -> Any:
        return plain_nest(tensor_spec.to_nest_array_spec(spec))

    collect = getattr(policy, "collect_data_spec", None)
    return PolicySpecs(
        time_step_spec=arrays(policy.time_step_spec), action_spec=arrays(policy.action_spec),
        policy_state_spec=arrays(policy.policy_state_spec), info_spec=arrays(policy.info_spec),
        collect_data_spec=arrays(collect) if collect is not None else None)
