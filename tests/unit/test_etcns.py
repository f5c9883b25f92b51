"""The choice ``emulator.proc.etcns`` makes without root: which /etc files a namespace has, and which of them share
a mount namespace (same names, same bytes). Making and entering the namespaces is tested on a live lab
(tests/integration/test_kube_proxy_default.py)."""
from __future__ import annotations

import os

from emulator.proc import etcns


def _digest_of(name: str) -> str:
    files = etcns.read_files(name)
    assert files is not None
    try:
        return etcns._digest(files)
    finally:
        for _, fd in files:
            os.close(fd)


def test_files_of_a_namespace_and_what_shares_a_mount_namespace(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("emulator.netlink.netns.NETNS_ETC_DIR", str(tmp_path))
    assert etcns.read_files("nothing") is None and etcns.EtcNamespaces().namespace_for("nothing") is None
    for ns, text in (("a", "search default.svc.cluster.local\n"), ("b", "search default.svc.cluster.local\n"),
                     ("c", "search x.svc.cluster.local\n")):
        (tmp_path / ns).mkdir()
        (tmp_path / ns / "resolv.conf").write_text(text)
    assert [e for e, _ in etcns.read_files("a") or []] == ["resolv.conf"]
    assert _digest_of("a") == _digest_of("b") != _digest_of("c")  # same content: one mount namespace for both
    (tmp_path / "b" / "hosts").write_text("127.0.0.1 localhost\n")
    assert _digest_of("a") != _digest_of("b")  # another file: another set
    (tmp_path / "b" / "sub").mkdir()
    assert [e for e, _ in etcns.read_files("b") or []] == ["hosts", "resolv.conf"]  # only plain files count


def test_a_missing_link_reads_the_directory_it_will_point_to(tmp_path, monkeypatch) -> None:
    """A pod started before the controller-manager made its ``/etc/netns/<pod>`` link gets its namespace's shared
    files (what the link will show); once the link exists, it is what counts."""
    etc, shared = tmp_path / "etc-netns", tmp_path / "shared"
    etc.mkdir()
    shared.mkdir()
    monkeypatch.setattr("emulator.netlink.netns.NETNS_ETC_DIR", str(etc))
    (shared / "resolv.conf").write_text("search default.svc.cluster.local\n")
    assert etcns.read_files("lab-p1") is None
    files = etcns.read_files("lab-p1", str(shared))
    assert files is not None and [e for e, _ in files] == ["resolv.conf"]
    assert os.read(files[0][1], 100) == b"search default.svc.cluster.local\n"
    for _, fd in files:
        os.close(fd)
    assert etcns.read_files("lab-p1", str(tmp_path / "none")) is None
    (etc / "lab-p1").mkdir()
    (etc / "lab-p1" / "hosts").write_text("127.0.0.1 localhost\n")
    files = etcns.read_files("lab-p1", str(shared))
    assert files is not None and [e for e, _ in files] == ["hosts"]
    for _, fd in files:
        os.close(fd)
