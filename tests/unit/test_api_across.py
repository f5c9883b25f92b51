"""The multi-host API server's pure parts (``emulator.hosts.api_across``): what of kubectl's object podlab's
parsers get, and podlab's errors as the Statuses kubectl prints."""
from __future__ import annotations

from emulator.errors import HostError, HostUnreachableError, ManifestError, NotFoundError, UsageError
from emulator.hosts import api_across


def test_a_pod_from_kubectl_keeps_what_the_parsers_take() -> None:
    obj = {"metadata": {"name": "p", "namespace": "x", "labels": {"a": "b"}, "annotations": {"k": "v"},
                        "managedFields": [], "uid": "u"},
           "spec": {"containers": [{"name": "c", "image": "pause"}], "tolerations": [], "nodeName": ""},
           "status": {}}
    assert api_across.clean("pods", obj) == {
        "metadata": {"name": "p", "namespace": "x", "labels": {"a": "b"}, "annotations": {"k": "v"}},
        "spec": {"containers": [{"name": "c", "image": "pause"}]}}
    assert api_across.clean("namespaces", {"metadata": {"name": "n"}, "spec": {"finalizers": []}}) == {
        "metadata": {"name": "n"}}


def test_errors_become_the_statuses_kubectl_prints() -> None:
    def status(e, hosts=frozenset()):
        s = api_across.status_of(e, hosts)
        return s.code, s.reason
    assert status(ManifestError("f.yaml", "spec", "bad", "fix")) == (422, "Invalid")
    assert status(NotFoundError("pod", "p", "lab x")) == (404, "NotFound")
    assert status(UsageError("apply of a Deployment is not available", obj="Deployment")) == (405, "MethodNotAllowed")
    assert status(UsageError("apply: host vm2 is unreachable", obj="vm2"), {"vm2"}) == (503, "ServiceUnavailable")
    assert status(HostUnreachableError("host vm2 stopped answering", obj="vm2")) == (503, "ServiceUnavailable")
    remote = HostError("host vm2: f.yaml: spec: bad", obj="vm2")
    remote.exit_code = 2
    assert status(remote) == (422, "Invalid")
    assert status(HostError("host vm2: odd", obj="vm2")) == (500, "InternalError")
