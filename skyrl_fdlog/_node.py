"""The node field of records: Ray's node IP address inside Ray, else the hostname.

One answer for every way a process inside Ray redirects (redirect() called by hand,
@redirected, the ready-made actors), so that `skyrl-fdlog --node` sees one machine as one node.
"""

from __future__ import annotations

import socket
import sys


def default_node() -> str:
    """Ray's node IP address in a process connected to Ray (an actor, a task, a driver after
    ray.init), else the hostname."""
    ray = sys.modules.get("ray")
    # Never imports Ray, and asks it only once connected: an unconnected Ray's runtime context
    # would start a cluster.
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        try:
            return ray.util.get_node_ip_address()
        except Exception:  # a Ray without this API, or one shutting down: fall back
            pass
    return socket.gethostname()
