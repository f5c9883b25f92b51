"""Tests of the host-local compatible IPAM store (emulator.ipam.hostlocal).

The interoperability tests run Debian's real ``host-local`` binary against the same directory when it is
installed; it only writes files under ``dataDir``, so no privileges and no network are involved.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from emulator.errors import CniError, IpamExhaustedError
from emulator.ipam import HostLocalStore

NET = IPv4Network("10.244.1.0/24")
SMALL = IPv4Network("10.244.1.0/29")
REAL_PLUGIN = Path("/usr/lib/cni/host-local")


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


@pytest.fixture
def store(tmp_path: Path) -> HostLocalStore:
    return HostLocalStore(tmp_path, "cbr0")


def test_allocation_order_skips_gateway(store: HostLocalStore) -> None:
    got = [store.allocate(f"c{i}", "eth0", NET) for i in range(4)]
    assert got == [ip("10.244.1.2"), ip("10.244.1.3"), ip("10.244.1.4"), ip("10.244.1.5")]


def test_explicit_gateway_and_range_are_honoured(tmp_path: Path) -> None:
    s = HostLocalStore(tmp_path, "net")
    kw = dict(gateway=ip("10.244.1.11"), range_start=ip("10.244.1.10"), range_end=ip("10.244.1.13"))
    got = [s.allocate(f"c{i}", "eth0", NET, **kw) for i in range(3)]
    assert got == [ip("10.244.1.10"), ip("10.244.1.12"), ip("10.244.1.13")]
    with pytest.raises(IpamExhaustedError, match="range set: 10.244.1.10-10.244.1.13$"):
        s.allocate("c9", "eth0", NET, **kw)


def test_round_robin_does_not_reuse_released_ip(store: HostLocalStore) -> None:
    first = store.allocate("pod-a-1", "eth0", NET)
    store.allocate("pod-b", "eth0", NET)
    assert store.release("pod-a-1", "eth0") == [first]
    again = store.allocate("pod-a-2", "eth0", NET)  # the pod re-created with a new sandbox ID
    assert again == ip("10.244.1.4") and again != first
    assert store.last_reserved() == again


def test_round_robin_wraps_around(tmp_path: Path) -> None:
    s = HostLocalStore(tmp_path, "cbr0")
    for i in range(5):
        s.allocate(f"c{i}", "eth0", SMALL)  # .2 .. .6: full
    s.release("c1", "eth0")  # frees .3
    assert s.allocate("new", "eth0", SMALL) == ip("10.244.1.3")


def test_allocate_is_idempotent(store: HostLocalStore) -> None:
    a = store.allocate("c1", "eth0", NET)
    assert store.allocate("c1", "eth0", NET) == a
    assert store.allocate("  c1 ", "eth0", NET) == a  # the ID is trimmed, as the real plugin does
    b = store.allocate("c1", "net1", NET)
    assert b != a
    assert store.get("c1", "eth0") == a and store.get("c1", "net1") == b


def test_release_is_idempotent(store: HostLocalStore) -> None:
    a = store.allocate("c1", "eth0", NET)
    b = store.allocate("c1", "net1", NET)
    assert store.release("c1", "eth0") == [a]
    assert store.release("c1", "eth0") == []
    assert store.release("never-seen", "eth0") == []
    assert store.get("c1", "eth0") is None
    assert store.get("c1", "net1") == b  # the other interface keeps its address


def test_exhaustion_names_the_range(store: HostLocalStore) -> None:
    got = {store.allocate(f"c{i}", "eth0", SMALL) for i in range(5)}
    assert got == {ip(f"10.244.1.{n}") for n in range(2, 7)}
    with pytest.raises(IpamExhaustedError) as info:
        store.allocate("one-too-many", "eth0", SMALL)
    assert str(info.value) == ("failed to allocate for range 0: "
                               "no IP addresses available in range set: 10.244.1.1-10.244.1.6")
    assert info.value.obj == "cbr0" and info.value.code == 999
    assert store.get("one-too-many", "eth0") is None


def test_invalid_ranges_are_config_errors(store: HostLocalStore) -> None:
    with pytest.raises(CniError, match="too small"):
        store.allocate("c", "eth0", IPv4Network("10.0.0.0/31"))
    with pytest.raises(CniError, match="not in network"):
        store.allocate("c", "eth0", NET, gateway=ip("10.9.9.1"))
    with pytest.raises(CniError, match="container ID"):
        store.allocate("  ", "eth0", NET)


def test_file_format(store: HostLocalStore) -> None:
    store.allocate("abc123", "eth0", NET)
    d = store.directory
    assert (d / "10.244.1.2").read_bytes() == b"abc123\r\neth0"
    assert (d / "last_reserved_ip.0").read_bytes() == b"10.244.1.2"
    assert (d / "lock").exists()
    assert sorted(os.listdir(d)) == ["10.244.1.2", "last_reserved_ip.0", "lock"]
    assert (d / "10.244.1.2").stat().st_mode & 0o777 == 0o644 & ~_umask()
    store.allocate("abc124", "eth0", NET)  # a longer value then a shorter one: no stale bytes left
    (d / "last_reserved_ip.0").write_bytes(b"10.244.1.100")
    store.allocate("abc125", "eth0", NET)
    assert (d / "last_reserved_ip.0").read_bytes() == b"10.244.1.101"


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_legacy_file_holding_only_the_id(store: HostLocalStore) -> None:
    (store.directory / "10.244.1.7").write_bytes(b"old-container")
    assert store.get("old-container", "eth0") == ip("10.244.1.7")
    assert store.allocations()[ip("10.244.1.7")] == ("old-container", "")
    assert store.release("old-container", "eth0") == [ip("10.244.1.7")]
    assert not (store.directory / "10.244.1.7").exists()


def test_persistence_across_instances(tmp_path: Path) -> None:
    s1 = HostLocalStore(tmp_path, "cbr0")
    a = s1.allocate("c1", "eth0", NET)
    s2 = HostLocalStore(tmp_path, "cbr0")
    assert s2.get("c1", "eth0") == a
    assert s2.allocate("c1", "eth0", NET) == a
    b = s2.allocate("c2", "eth0", NET)
    assert b == ip("10.244.1.3")
    assert s1.get("c2", "eth0") == b  # s1's index notices s2's change
    assert s1.allocate("c3", "eth0", NET) == ip("10.244.1.4")
    assert s2.release("c3", "eth0") == [ip("10.244.1.4")]
    assert s1.get("c3", "eth0") is None
    assert s1.allocations() == {a: ("c1", "eth0"), b: ("c2", "eth0")}


@pytest.mark.parametrize("fine", [True, False], ids=["fine-timestamps", "coarse-timestamps"])
def test_index_follows_foreign_changes(tmp_path: Path, fine: bool) -> None:
    s = HostLocalStore(tmp_path, "cbr0")
    s.allocate("c1", "eth0", NET)
    s._fine = fine  # exercise both ways of deciding that the directory changed
    (s.directory / "10.244.1.3").write_bytes(b"foreign\r\neth0")  # as another writer would
    assert s.get("foreign", "eth0") == ip("10.244.1.3")
    assert s.allocate("c2", "eth0", NET) == ip("10.244.1.4")
    os.unlink(s.directory / "10.244.1.4")
    assert s.get("c2", "eth0") is None


def test_directory_removed_under_the_store(tmp_path: Path, store: HostLocalStore) -> None:
    store.allocate("c1", "eth0", NET)
    shutil.rmtree(store.directory)
    assert store.get("c1", "eth0") is None
    assert store.allocate("c2", "eth0", NET) == ip("10.244.1.2")
    assert (store.directory / "lock").exists()


def _worker(data_dir: str, proc: int, count: int, shared: HostLocalStore | None, out: object) -> None:
    s = shared or HostLocalStore(data_dir, "cbr0")
    out.put([str(s.allocate(f"p{proc}-c{i}", "eth0", NET)) for i in range(count)])  # type: ignore[attr-defined]


@pytest.mark.parametrize("inherit", [False, True], ids=["own-store", "store-inherited-by-fork"])
def test_concurrent_allocation_from_processes(tmp_path: Path, inherit: bool) -> None:
    shared = HostLocalStore(tmp_path, "cbr0") if inherit else None
    if shared is not None:
        shared.get("warm-up", "eth0")  # the lock descriptor exists before the fork and is inherited
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), p, 20, shared, out)) for p in range(8)]
    try:
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    flat = [a for r in results for a in r]
    assert len(flat) == 160 and len(set(flat)) == 160
    allocs = HostLocalStore(tmp_path, "cbr0").allocations()
    assert len(allocs) == 160
    assert {owner for owner, _ in allocs.values()} == {f"p{p}-c{i}" for p in range(8) for i in range(20)}


def test_concurrent_allocation_from_threads(store: HostLocalStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: store.allocate(f"t{i}", "eth0", NET), range(100)))
    assert len(set(got)) == 100


def test_allocate_does_not_rescan_a_full_directory(store: HostLocalStore, monkeypatch) -> None:
    """With 250 of 253 addresses taken, allocating again uses the store's index instead of listing the directory
    each time (what keeps an agent's ADD flat at 100 pods a node). Counted, not timed."""
    from emulator.ipam import hostlocal
    for i in range(250):
        store.allocate(f"c{i}", "eth0", NET)
    scans = []
    real = hostlocal.os.scandir
    monkeypatch.setattr(hostlocal.os, "scandir", lambda d: scans.append(d) or real(d))
    for k in range(300):
        store.release(f"c{k % 250}", "eth0")
        store.allocate(f"c{k % 250}", "eth0", NET)
    assert len(scans) <= 3, f"{len(scans)} directory scans for 300 allocations"


# ---------------------------------------------------------------------- interoperability with the real plugin
def run_real(command: str, cid: str, data_dir: Path, subnet: str = "10.244.1.0/24",
             ifname: str = "eth0") -> tuple[int, dict]:
    conf = {"cniVersion": "0.4.0", "name": "cbr0", "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}}
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": str(data_dir), "CNI_IFNAME": ifname,
           "CNI_PATH": str(REAL_PLUGIN.parent), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([str(REAL_PLUGIN)], input=json.dumps(conf).encode(), env=env, capture_output=True,
                          timeout=30)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


needs_real = pytest.mark.skipif(not os.access(REAL_PLUGIN, os.X_OK), reason="no /usr/lib/cni/host-local")


@needs_real
def test_real_plugin_and_store_share_a_directory(tmp_path: Path) -> None:
    rc, out = run_real("ADD", "real-1", tmp_path)
    assert rc == 0, out
    assert out["ips"][0]["address"] == "10.244.1.2/24" and out["ips"][0]["gateway"] == "10.244.1.1"
    s = HostLocalStore(tmp_path, "cbr0")
    assert s.get("real-1", "eth0") == ip("10.244.1.2")
    assert s.allocate("ours-1", "eth0", NET) == ip("10.244.1.3")  # round-robin continues after its IP
    rc, out = run_real("ADD", "real-2", tmp_path)
    assert rc == 0 and out["ips"][0]["address"] == "10.244.1.4/24"  # it continues after ours
    d = s.directory
    assert (d / "10.244.1.2").read_bytes() == b"real-1\r\neth0"
    assert (d / "10.244.1.3").read_bytes() == b"ours-1\r\neth0"
    assert (d / "last_reserved_ip.0").read_bytes() == b"10.244.1.4"
    assert s.allocations() == {ip("10.244.1.2"): ("real-1", "eth0"), ip("10.244.1.3"): ("ours-1", "eth0"),
                               ip("10.244.1.4"): ("real-2", "eth0")}
    assert sorted(os.listdir(d)) == ["10.244.1.2", "10.244.1.3", "10.244.1.4", "last_reserved_ip.0", "lock"]
    assert run_real("DEL", "ours-1", tmp_path)[0] == 0  # the real plugin frees what we wrote
    assert s.get("ours-1", "eth0") is None
    assert s.release("real-1", "eth0") == [ip("10.244.1.2")]  # and we free what it wrote
    assert sorted(os.listdir(d)) == ["10.244.1.4", "last_reserved_ip.0", "lock"]


@needs_real
def test_real_plugin_exhaustion_message_matches(tmp_path: Path) -> None:
    s = HostLocalStore(tmp_path, "cbr0")
    for i in range(5):
        s.allocate(f"c{i}", "eth0", SMALL)
    rc, out = run_real("ADD", "real-x", tmp_path, subnet=str(SMALL))
    assert rc != 0
    with pytest.raises(IpamExhaustedError) as info:
        s.allocate("ours-x", "eth0", SMALL)
    assert out["code"] == info.value.code == 999
    assert out["msg"] == str(info.value)


@needs_real
def test_real_plugin_and_store_allocate_concurrently(tmp_path: Path) -> None:
    s = HostLocalStore(tmp_path, "cbr0")

    def ours() -> list[str]:
        return [str(s.allocate(f"ours-{i}", "eth0", NET)) for i in range(40)]

    with ThreadPoolExecutor(5) as pool:
        real = [pool.submit(run_real, "ADD", f"real-{i}", tmp_path) for i in range(16)]
        mine = pool.submit(ours)
        real_ips = [f.result()[1]["ips"][0]["address"].split("/")[0] for f in real]
        our_ips = mine.result()
    everything = real_ips + our_ips
    assert len(everything) == 56 and len(set(everything)) == 56
    assert len(s.allocations()) == 56
