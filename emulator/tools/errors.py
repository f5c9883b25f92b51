"""Typed errors of the lab tools; each names the object (target, interface, file) it is about.

They subclass ``emulator.errors`` classes so that the CLI maps them to the usual exit codes: an unknown target or
interface is "not found" (4), a missing program or kernel feature (tcpdump, tshark, Mininet, netem) is "missing
dependency" (5), anything else a tool fails at is a plain failure (1).
"""
from __future__ import annotations

from emulator.errors import MissingDependencyError, PodlabError


class TargetError(PodlabError):
    """A capture/trace/shaping target (pod, node, underlay, interface) does not exist in the lab."""

    exit_code = 4


class ToolError(PodlabError):
    """A tool (tcpdump, tshark, tc, dot) failed; the message carries its own words."""


class NetemUnavailableError(MissingDependencyError):
    """The kernel has no netem qdisc (sch_netem): delay, jitter and loss cannot be emulated."""


class MininetMissingError(MissingDependencyError):
    """Debian's python3-mininet (or its mnexec helper) is not installed."""
