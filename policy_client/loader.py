"""`load(uri)`: a local policy for a SavedModel path, a RemotePolicy for grpc://host:port/name."""

from __future__ import annotations

import urllib.parse
from typing import Any

import grpc

GRPC_SCHEMES = ("grpc", "grpcs")


def load(uri: str, **kwargs: Any) -> Any:
    """Loads a policy by URI, local or remote, as a `py_policy.PyPolicy`.

    - "grpc://host:port/name" (plaintext) or "grpcs://host:port/name" (TLS with
      the system's root certificates): a RemotePolicy for policy `name` (empty
      name: the server's default policy).
    - anything else is a PolicySaver SavedModel directory (any tf.io.gfile
      path): a SavedModelPyTFEagerPolicy with the specs saved beside it.

    Code that uses the result cannot tell the two apart except by class.

    Args:
      uri: where the policy is.
      **kwargs: passed to RemotePolicy (timeout, transport, options, ...) or to
        SavedModelPyTFEagerPolicy (use_tf_function, ...).

    Raises:
      ValueError: a grpc URI without host:port.
      RemoteError: the server cannot be reached or has no such policy.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in GRPC_SCHEMES:
        if not parsed.netloc:
            raise ValueError(f"{uri!r}: expected {parsed.scheme}://host:port/policy_name")
        from policy_client.remote_policy import RemotePolicy  # pylint: disable=import-outside-toplevel

        if parsed.scheme == "grpcs" and "credentials" not in kwargs:
            kwargs["credentials"] = grpc.ssl_channel_credentials()
        return RemotePolicy(parsed.netloc, parsed.path.strip("/"), **kwargs)
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel

    kwargs.setdefault("load_specs_from_pbtxt", True)
    return py_tf_eager_policy.SavedModelPyTFEagerPolicy(uri, **kwargs)
