"""Topology layer: YAML file → validated, frozen model (no kernel object is touched here)."""
from emulator.topology.model import Container, Node, Pod, Port, Topology, Underlay

__all__ = ["Container", "Node", "Pod", "Port", "Topology", "Underlay"]
