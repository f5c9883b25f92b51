"""Typed errors of podlab.

Every error names the object it is about (a file, a field, a lab, a node, a pod, a namespace) so that a message
can be acted on without reading a traceback. The CLI maps each class to an exit code (see ``exit_code``); library
callers catch the class they care about. Errors are raised, never logged and swallowed.
"""
from __future__ import annotations


class PodlabError(Exception):
    """Base class. ``obj`` is the name of the object the error is about."""

    exit_code = 1

    def __init__(self, message: str, obj: str | None = None) -> None:
        super().__init__(message)
        self.obj = obj


class TopologyError(PodlabError):
    """A topology file is invalid: the message names file, field, value and the fix."""

    exit_code = 2

    def __init__(self, file: str, field: str, message: str, fix: str) -> None:
        self.file, self.field, self.fix = file, field, fix
        super().__init__(f"{file}: {field}: {message}; fix: {fix}", obj=field)


class ManifestError(TopologyError):
    """A manifest given to ``apply`` is invalid (same shape as a topology error)."""


class LabExistsError(PodlabError):
    exit_code = 3


class LabNotFoundError(PodlabError):
    exit_code = 4


class NamespaceConflictError(PodlabError):
    """A namespace the lab would create already exists and the lab does not own it."""

    exit_code = 3


class NetlinkError(PodlabError):
    """The kernel refused a netlink request; ``errno`` is the kernel's error number."""

    def __init__(self, message: str, obj: str | None = None, errno: int = 0) -> None:
        super().__init__(message, obj)
        self.errno = errno


class BuildError(PodlabError):
    """Bringing a lab up failed (after rollback); the message names the step and the object."""


class CniError(PodlabError):
    """A CNI plugin failed; ``code`` follows the CNI spec's error codes."""

    def __init__(self, message: str, obj: str | None = None, code: int = 999, details: str = "") -> None:
        super().__init__(message, obj)
        self.code, self.details = code, details


class IpamExhaustedError(CniError):
    """No free address is left in a range (CNI error code 999 with a message naming the range)."""


class PodNotFoundError(PodlabError):
    exit_code = 4


class MissingDependencyError(PodlabError):
    """A program or kernel feature the lab needs is missing; the message says how to install it."""

    exit_code = 5


class TimeoutError_(PodlabError):
    """Waiting for a condition (pods Running, kernel release) took longer than allowed."""

    exit_code = 6


class NotFoundError(PodlabError):
    """An object (a Kubernetes namespace, a Service, ...) does not exist."""

    exit_code = 4


class ConflictError(PodlabError):
    """A write lost a race: the object changed since it was read (its resourceVersion is stale)."""

    exit_code = 1


class AlreadyExistsError(PodlabError):
    """An object to be created exists already."""

    exit_code = 3
