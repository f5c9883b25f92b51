"""Typed errors of podlab: every class a caller of podlab can see is defined here, with its exit code.

Every error names the object it is about (a file, a field, a lab, a node, a pod, a namespace) so that a message
can be acted on without reading a traceback. The CLI maps each class to an exit code (``exit_code``: 1 failure,
2 invalid topology/manifest, 3 exists, 4 not found, 5 missing dependency, 6 timeout); library callers catch the
class they care about. Errors are raised, never logged and swallowed.

The classes, by what went wrong:

- the input: ``TopologyError`` (file, field, value, fix; exit 2) and ``ManifestError`` (the same for ``apply``);
  ``UsageError`` (2: a command line that names no known kind, or misses a name);
- something exists: ``LabExistsError``, ``NamespaceConflictError``, ``AlreadyExistsError`` (3); ``AlreadyUp``
  (the same topology is up: exit 0, nothing to do);
- something does not: ``NotFoundError(kind, name)`` (4) for every kind — pod, node, service, deployment,
  container, lab, target — with ``PodNotFoundError``, ``LabNotFoundError`` and ``TargetError`` (a place a tool
  acts on: a pod, node, underlay, external or interface) as its kinds that callers catch by class;
- the kernel or a program: ``NetlinkError`` (with the kernel's errno) and ``NoRouteError``; ``CniError`` (CNI
  error code), ``IpamExhaustedError``, ``CniNotReady``; ``BirdError``; ``NftError`` and ``SyncError`` (the
  kube-proxy backends); ``ToolError`` (tcpdump, tshark, tc, dot); ``ProcessError`` (a daemon did not start) and
  ``JournalClosed`` (nothing may start: the lab is being removed); ``StateError`` (the state tree under
  /run/podlab);
- the lab's own rules: ``ConflictError`` (a write against a stale resourceVersion), ``BuildError`` (``up``
  failed and was rolled back), ``AllocationError`` (a Service CIDR or NodePort range is full or a value is taken);
- the machine: ``MissingDependencyError`` (5) with ``NetemUnavailableError`` and ``MininetMissingError``;
- other machines: ``HostError`` (a host of a multi-host lab, named in ``obj``) with ``HostUnreachableError``,
  ``HostVersionError``, ``HostSudoError`` and ``MtuError``;
- time: ``LabTimeoutError`` (6: pods not Running, a wait that took too long).

Internal helper exceptions that never leave their module's caller (each is turned into one of the above with the
file and field): ``topology.cidr.CidrError``, ``topology.units.UnitError`` and ``tools.pcapng.PcapError`` (all
``ValueError``), ``services.dnsserver.CorefileError`` (a ``ValueError``: the ``coredns`` pods' program prints it
as CoreDNS's ``[FATAL]`` line and exits 1), ``topology.scheduler.Unschedulable``; in the API server, whose errors end as an HTTP reply (a
Kubernetes ``Status`` with its code and reason), never as a podlab exit: ``apiserver.status.ApiError`` (the reply
itself), ``apiserver.patch.PatchError`` and ``apiserver.protobuf.ProtobufError`` (a body it cannot read: 400/415), ``apiserver.spdy.ProtocolError`` (a port-forward
client's malformed SPDY frame: the session ends with GOAWAY). ``testing.NetworkAssertionError`` is an
``AssertionError``, as pytest expects of a failed assertion.
"""
from __future__ import annotations

from typing import Iterable


class PodlabError(Exception):
    """Base class. ``obj`` is the name of the object the error is about."""

    exit_code = 1

    def __init__(self, message: str, obj: str | None = None) -> None:
        super().__init__(message)
        self.obj = obj


# -- input ---------------------------------------------------------------------------------------------------
class TopologyError(PodlabError):
    """A topology file is invalid: the message names file, field, value and the fix."""

    exit_code = 2

    def __init__(self, file: str, field: str, message: str, fix: str) -> None:
        self.file, self.field, self.fix = file, field, fix
        text = f"{file}: {field}: {message}; fix: {fix}"
        super().__init__(" ".join(text.splitlines()), obj=field)  # one line, whatever the file held


class ManifestError(TopologyError):
    """A manifest given to ``apply`` is invalid (same shape as a topology error)."""


class UsageError(PodlabError):
    """The command line asks for something podlab has no word for (an unknown kind, a missing name, an option
    that does not apply): as argparse's own usage errors, exit 2."""

    exit_code = 2


# -- exists --------------------------------------------------------------------------------------------------
class LabExistsError(PodlabError):
    exit_code = 3


class AlreadyExistsError(PodlabError):
    """An object to be created (a pod, a namespace, any object the API server creates) exists already."""

    exit_code = 3


class AlreadyUp(LabExistsError):
    """The same topology is already up: nothing to do (the CLI reports it and exits 0)."""

    exit_code = 0


class NamespaceConflictError(PodlabError):
    """A namespace the lab would create already exists and the lab does not own it."""

    exit_code = 3


# -- not found -----------------------------------------------------------------------------------------------
class NotFoundError(PodlabError):
    """The object ``kind``/``name`` does not exist (``where``: e.g. "lab demo"); ``known`` lists what does.

    The message reads as kubectl's (``pod "web-9" not found in lab demo (pods: web-1, web-2)``); ``message``
    replaces it where a sentence says more (``no lab is up; start one with podlab up FILE``).
    """

    exit_code = 4

    def __init__(self, kind: str, name: str | None, where: str = "", *, known: Iterable[str] | None = None,
                 message: str | None = None) -> None:
        self.kind, self.name, self.where = kind, name, where
        if message is None:
            message = f'{kind} "{name}" not found' + (f" in {where}" if where else "")
            if known is not None:
                message += f" ({plural(kind)}: {', '.join(known) or 'none'})"
        super().__init__(message, obj=name)


def plural(kind: str) -> str:
    return kind if kind.endswith("s") else f"{kind}s"


class PodNotFoundError(NotFoundError):
    def __init__(self, name: str, where: str = "", **kw) -> None:
        super().__init__("pod", name, where, **kw)


class LabNotFoundError(NotFoundError):
    def __init__(self, name: str | None = None, *, known: Iterable[str] | None = None,
                 message: str | None = None) -> None:
        super().__init__("lab", name, known=known, message=message)


class TargetError(NotFoundError):
    """A place a verb acts on (pod, node, underlay, external, an interface) does not exist in the lab or cannot
    be read; the message says what exists instead."""

    def __init__(self, message: str, obj: str | None = None) -> None:
        super().__init__("target", obj, message=message)


# -- the kernel and the programs podlab drives ---------------------------------------------------------------
class NetlinkError(PodlabError):
    """The kernel refused a netlink request; ``errno`` is the kernel's error number."""

    def __init__(self, message: str, obj: str | None = None, errno: int = 0) -> None:
        super().__init__(message, obj)
        self.errno = errno


class NoRouteError(NetlinkError):
    """The kernel has no route to the destination (ENETUNREACH / EHOSTUNREACH)."""


class CniError(PodlabError):
    """A CNI plugin failed; ``code`` follows the CNI spec's error codes."""

    def __init__(self, message: str, obj: str | None = None, code: int = 999, details: str = "") -> None:
        super().__init__(message, obj)
        self.code, self.details = code, details


class IpamExhaustedError(CniError):
    """No free address is left in a range (CNI error code 999 with a message naming the range)."""


class CniNotReady(CniError):
    """The node has no CNI configuration (yet): the kubelet's "network plugin not ready"."""


class BirdError(PodlabError):
    """BIRD's control socket is unreachable or refused a command."""


class NftError(PodlabError):
    """nft refused a command (its message is kept)."""


class SyncError(PodlabError):
    """The kernel refused a kube-proxy sync transaction (the tool's message is kept)."""


class ToolError(PodlabError):
    """A tool (tcpdump, tshark, tc, dot) failed; the message carries its own words."""


class ProcessError(PodlabError):
    """A process podlab starts (an agent, a daemon) did not start; the message names it and its log."""


class JournalClosed(ProcessError):
    """The lab's process journal is closed (the lab is being removed) or does not exist: nothing may start."""


class StateError(PodlabError):
    """The state tree (``/run/podlab`` or ``PODLAB_STATE_DIR``) cannot be made, mounted or written."""


# -- the lab's own rules -------------------------------------------------------------------------------------
class ConflictError(PodlabError):
    """A write lost a race: the object changed since it was read (its resourceVersion is stale; the API
    server's 409 Conflict)."""


class BuildError(PodlabError):
    """Bringing a lab up failed (after rollback); the message names the step and the object."""


class AllocationError(PodlabError):
    """The Service CIDR or the NodePort range is full, or a requested value is taken (names the object)."""


# -- the machine ---------------------------------------------------------------------------------------------
class MissingDependencyError(PodlabError):
    """A program or kernel feature the lab needs is missing; the message says how to install it."""

    exit_code = 5


class NetemUnavailableError(MissingDependencyError):
    """The kernel has no netem qdisc (sch_netem): delay, jitter and loss cannot be emulated."""


class MininetMissingError(MissingDependencyError):
    """Debian's python3-mininet (or its mnexec helper) is not installed."""


# -- other machines (labs spanning several hosts: emulator.hosts) ---------------------------------------------
class HostError(PodlabError):
    """A host of a multi-host lab cannot take part; ``obj`` is the host's name, the message says the fix."""


class HostUnreachableError(HostError):
    """SSH to the host failed (no route, refused, timed out, key refused, or the connection died)."""


class HostVersionError(HostError):
    """The host runs another podlab version than the controller."""


class HostSudoError(HostError):
    """The SSH user is not root and cannot run ``sudo -n`` without a password."""


class MtuError(HostError):
    """The hosts' interfaces cannot carry the underlay MTU through the tunnel (or the proof ping failed)."""


# -- time ----------------------------------------------------------------------------------------------------
class LabTimeoutError(PodlabError):
    """Waiting for a condition (pods Running, kernel release) took longer than allowed."""

    exit_code = 6
