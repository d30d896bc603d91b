"""granny.testbed: N emulated hosts (network namespaces) with a granny worker each, a planner, and
links with latency, jitter, bandwidth and loss; see docs/testbed.md.

    with Testbed(hosts=3, latency="5ms", bandwidth="1gbit") as tb:
        client = granny.connect(address=tb.address, token=tb.token)
"""

from __future__ import annotations

from ..errors import TestbedError
from .testbed import Host, Testbed, make_topology
from .topology import Event, LinkSpec, Topology, load_topology

__all__ = ["Event", "Host", "LinkSpec", "Testbed", "TestbedError", "Topology", "load_topology", "make_topology"]
