"""`load(uri)`: a local policy for a SavedModel path, a RemotePolicy for grpc://host:port/name."""

from __future__ import annotations

import urllib.parse
from typing import Any

from policy_client.transport import security

GRPC_SCHEMES = security.URI_SCHEMES


def load(uri: str, **kwargs: Any) -> Any:
    """Loads a policy by URI, local or remote, as a `py_policy.PyPolicy`.

    - "grpc://host:port/name" (plaintext) or "grpcs://host:port/name" (TLS, with
      the system's root certificates unless `ca` is given): a RemotePolicy for
      policy `name` (empty name: the server's default policy). Options in the
      query: `ca`, `cert` and `key` (PEM files: the CA, and a client
      certificate for mTLS), `server_name` (the name the server's certificate
      holds, when not `host`), `token_file` (a file holding the bearer token),
      e.g. "grpcs://10.0.0.5:50051/cartpole?ca=/etc/tfa/ca.pem&server_name=policy.internal".
      A token is never put in a URI: without token_file it comes from
      $TFA_POLICY_TOKEN or $TFA_POLICY_TOKEN_FILE (see policy_client.transport.security).
    - anything else is a PolicySaver SavedModel directory (any tf.io.gfile
      path): a SavedModelPyTFEagerPolicy with the specs saved beside it.

    Code that uses the result cannot tell the two apart except by class.

    Args:
      uri: where the policy is.
      **kwargs: passed to RemotePolicy (timeout, transport, options, ...) or to
        SavedModelPyTFEagerPolicy (use_tf_function, ...).

    Raises:
      ValueError: a grpc URI without host:port, with an unknown option or a
        token in it, or a token for a plaintext connection to another host.
      OSError: a certificate or token file cannot be read.
      RemoteError: the server cannot be reached or has no such policy.
    """
    if urllib.parse.urlsplit(uri).scheme in GRPC_SCHEMES:
        security.parse_uri(uri)  # fails fast, before tf_agents is imported
        from policy_client.remote_policy import RemotePolicy  # pylint: disable=import-outside-toplevel

        return RemotePolicy(uri, **kwargs)
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel

    kwargs.setdefault("load_specs_from_pbtxt", True)
    return py_tf_eager_policy.SavedModelPyTFEagerPolicy(uri, **kwargs)
