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
