"""IPAM: address stores for pod networks.

``hostlocal.HostLocalStore`` keeps one node's allocations of one network in the on-disk layout of the CNI
reference ``host-local`` plugin, so the built-in plugin and the real binary can share a directory.
"""
from emulator.ipam.hostlocal import DEFAULT_DATA_DIR, HostLocalStore

__all__ = ["DEFAULT_DATA_DIR", "HostLocalStore"]
