"""gRPC targets and bind addresses, read the same way by both sides: the hosts they name, and whether
they stay on this machine."""

from __future__ import annotations

import ipaddress

UNIX_SCHEMES = ("unix:", "unix-abstract:")


def host_of(host_port: str) -> str:
    """The host of "host:port", "[v6]:port", "v6" or "host" (brackets removed)."""
    if host_port.startswith("["):
        return host_port[1:].partition("]")[0]
    return host_port.rsplit(":", 1)[0] if host_port.count(":") == 1 else host_port


def is_loopback_host(host: str) -> bool:
    """Whether `host` ("localhost", "127.0.0.1", "::1", ...) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(address: str) -> bool:
    """Whether an address ("host:port", "[v6]:port", "unix:PATH") is reachable from this host only."""
    if address.startswith(UNIX_SCHEMES):
        return True
    return is_loopback_host(host_of(address))
