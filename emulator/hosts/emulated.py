"""Emulated hosts for tests and benchmarks: N "machines" on one box, each with its own sshd, never a real host.

Each host is a holder process made by ``unshare --net --mount --pid --uts --fork --mount-proc``: PID 1 of its
own pid namespace (a tiny reaper, so the daemons a lab double-forks never linger as zombies), with private tmpfs
mounts on ``/run/netns``, ``/run/podlab``, ``/etc/netns`` and ``/run/sshd`` and a fresh sysfs, so a lab built
there is invisible from the machine and from the other hosts (the same lab name exists on each). Its "NIC"
``eth1`` is a veth into a switch namespace holding bridge ``br0``: the physical LAN, 192.168.57.0/24 (hosts .11,
.12, ...; the controller .2), with the MTU the test asks for; like a real switch it passes frames through no
netfilter (``bridge-nf-call-*`` = 0 in its namespace: measured, that cost the emulated LAN ~30 % of vxlan
throughput across hosts). Each host runs ``/usr/sbin/sshd`` inside all its
namespaces, with its own config, host key, authorized key and pid file under this harness's work directory.

The controller is one more holder (net + mount namespaces, private ``/run/podlab``) on the LAN: tests run the
podlab CLI there (``controller_argv``), so paramiko's sockets are opened inside it, never in the machine's root
namespace, and the controller's own record never reaches the machine's state tree.

Nothing is created in the root namespace: veths are made inside the switch namespace and moved by PID. Every
holder is recorded by PID and start time (``holders.json`` in the work directory, so ``kill_recorded`` can end
them after a crash); ``close`` kills exactly those (a pid namespace dies with its PID 1, and with it every
process, mount and network namespace of the host), then removes the work directory and any mount point it had
to create. ``kill_host`` does the same to one host, which is how a test makes a machine fail.

The mount points are shared by every harness on the machine (two test sessions, a benchmark beside a test):
removing a directory that is a mount point in another mount namespace detaches that mount there (Linux ≥ 3.18),
so one harness removing ``/run/sshd`` while another's hosts run made their sshd reset every connection. So the
directories a harness had to create are listed in ``DIRS_LOCK`` and removed only by the last harness to close:
each holds a shared ``flock`` on that file while it lives and removes them only if it then gets it exclusively.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator.netlink.netns import NETNS_ETC_DIR, NETNS_RUN_DIR
from emulator.proc.lifecycle import alive, start_time

LAN = "192.168.57"
CONTROLLER_IP = f"{LAN}.2"
PRIVATE_DIRS = (NETNS_RUN_DIR, "/run/podlab", NETNS_ETC_DIR, "/run/sshd")
SSHD = "/usr/sbin/sshd"
DIRS_LOCK = "/tmp/podlab-emulated-hosts.dirs"  # lists the mount points harnesses created; flock counts them
_INIT = r"""
import os, socket, subprocess, sys, time
for d in sys.argv[2:]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", d], check=True)
subprocess.run(["mount", "-t", "sysfs", "sysfs", "/sys"], check=True)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
socket.sethostname(sys.argv[1])
os.write(1, b"ready\n")
os.close(1)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(0.1)
"""


def podlab_command(tree: str | Path, python: str = sys.executable) -> str:
    """A host entry's ``command`` that runs podlab from the source tree ``tree`` on an emulated host. It starts in
    the tree: the containers the agents start (``python -m emulator.images.netexec``) get the pod's environment,
    without ``PYTHONPATH``, and find the package through the working directory they inherit from ``host serve``
    (an installed podlab needs neither)."""
    return f"sh -c 'cd {tree} && exec env PYTHONPATH={tree} {python} -m emulator \"$@\"' podlab"


@dataclass
class Holder:
    name: str
    pid: int
    start: int | None
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return alive(self.pid, self.start)


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def _child_of(pid: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise RuntimeError(f"unshare {pid} made no child")


class EmulatedHosts:
    """``with EmulatedHosts(3) as hosts:`` three hosts ``<prefix>1..3`` reachable over SSH from the controller."""

    def __init__(self, count: int, prefix: str = "mult", mtu: int = 1500, workdir: str | None = None,
                 users: tuple[str, ...] = ()) -> None:
        self.count, self.prefix, self.mtu, self.users = count, prefix, mtu, users
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"{prefix}-hosts-"))
        self.holders: dict[str, Holder] = {}
        self.created_dirs: list[str] = []
        self._lock: int | None = None  # fd of DIRS_LOCK, shared-locked while we live
        self.names = [f"{prefix}{i + 1}" for i in range(count)]
        self.key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"

    # -- life ---------------------------------------------------------------------------------------------
    def __enter__(self) -> "EmulatedHosts":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._claim_dirs()
        self.dir.chmod(0o755)  # the private keys in it stay 0600
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "podlab-test-controller", "-f", str(self.key)])
        sw = self._holder("switch", ["unshare", "--net", "sh", "-c", "echo ready && exec sleep infinity"])
        if os.path.isdir("/proc/sys/net/bridge"):  # a switch runs no host's netfilter (br_netfilter starts at 1)
            for k in ("iptables", "ip6tables", "arptables"):
                self._ns(sw, ["sysctl", "-q", "-w", f"net.bridge.bridge-nf-call-{k}=0"])
        self._ns(sw, ["ip", "link", "add", "br0", "type", "bridge"])
        self._ns(sw, ["ip", "link", "set", "br0", "mtu", str(self.mtu), "up"])
        ctl = self._holder("controller", ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
                                          "mount -t tmpfs -o mode=755 tmpfs /run/podlab && "
                                          "mount -t tmpfs -o mode=755 tmpfs /run/netns && echo ready && exec sleep infinity"])
        self._cable(ctl, "c0", CONTROLLER_IP)
        for i, name in enumerate(self.names):
            self._start_host(name, self.address(name), i)
        for name in self.names:
            self._wait_sshd(name)

    def address(self, name: str) -> str:
        return f"{LAN}.{11 + self.names.index(name)}"

    def _save(self) -> None:
        (self.dir / "holders.json").write_text(json.dumps(
            [{"name": h.name, "pid": h.pid, "start": h.start} for h in self.holders.values()]))

    def _holder(self, name: str, argv: list[str], fork: bool = False) -> Holder:
        """Start a holder; it says "ready" on stdout once its namespaces and mounts are in place."""
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        pid = _child_of(p.pid) if fork else p.pid
        h = Holder(name, pid, start_time(pid), p)
        self.holders[name] = h
        self._save()
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"emulated {name} did not start")
        return h

    def _ns(self, h: Holder, argv: list[str], *, all_ns: bool = False, **kw) -> subprocess.CompletedProcess:
        flags = ["-n", "-m", "-p", "-u"] if all_ns else ["-n"]
        return _run(["nsenter", "-t", str(h.pid), *flags, "--", *argv], **kw)

    def _cable(self, h: Holder, port: str, ip: str) -> None:
        sw = self.holders["switch"]
        self._ns(sw, ["ip", "link", "add", port, "mtu", str(self.mtu), "type", "veth", "peer", "name", "eth1",
                      "mtu", str(self.mtu), "netns", str(h.pid)])
        self._ns(sw, ["ip", "link", "set", port, "master", "br0", "up"])
        self._ns(h, ["ip", "addr", "add", f"{ip}/24", "dev", "eth1"])
        self._ns(h, ["ip", "link", "set", "eth1", "up"])
        self._ns(h, ["ip", "link", "set", "lo", "up"])

    def _start_host(self, name: str, ip: str, i: int) -> None:
        argv = ["unshare", "--net", "--mount", "--pid", "--uts", "--fork", "--propagation", "private",
                "--mount-proc", sys.executable, "-c", _INIT, name, *PRIVATE_DIRS]
        h = self._holder(name, argv, fork=True)
        self._cable(h, f"h{i + 1}", ip)
        d = self.dir / name
        d.mkdir()
        if self.users:  # extra login users, in this host's /etc/passwd only (a copy bound over it in its mount ns)
            lines = [f"{u}:x:{1500 + k}:{1500 + k}:podlab test user:/tmp:/bin/sh" for k, u in enumerate(self.users)]
            (d / "passwd").write_text(Path("/etc/passwd").read_text() + "\n".join(lines) + "\n")
            self._ns(h, ["mount", "--bind", str(d / "passwd"), "/etc/passwd"], all_ns=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(d / "ssh_host_ed25519_key")])
        shutil.copy(f"{self.key}.pub", d / "authorized_keys")
        (d / "authorized_keys").chmod(0o644)  # sshd reads it as the user logging in (a non-root user too)
        (d / "sshd_config").write_text("\n".join([
            f"ListenAddress {ip}", "Port 22", f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"PidFile {d / 'sshd.pid'}", f"AuthorizedKeysFile {d / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "UseDNS no", "MaxSessions 64", "MaxStartups 64:30:128",
            "PrintMotd no", "Subsystem sftp internal-sftp", ""]))
        self._ns(h, [SSHD, "-t", "-f", str(d / "sshd_config")], all_ns=True)
        self._ns(h, [SSHD, "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")], all_ns=True)
        pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
        with open(self.known_hosts, "a") as f:
            f.write(f"{ip} {pub[0]} {pub[1]}\n")

    def _wait_sshd(self, name: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = self._ns(self.holders[name], ["ss", "-Hltn", "sport = :22"]).stdout
            if out.strip():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of emulated host {name} is not listening: "
                                   f"{(self.dir / name / 'sshd.log').read_text(errors='replace')[-500:]}")
            time.sleep(0.02)

    def set_port_mtu(self, name: str, mtu: int) -> None:
        """The switch's port towards host ``name`` gets ``mtu``: a path that carries less than the host's NIC."""
        self._ns(self.holders["switch"], ["ip", "link", "set", f"h{self.names.index(name) + 1}", "mtu", str(mtu)])

    def set_port_up(self, name: str, up: bool) -> None:
        """Unplug (``up`` False) or plug back the cable of host ``name`` at the switch: a host that is away."""
        self._ns(self.holders["switch"], ["ip", "link", "set", f"h{self.names.index(name) + 1}",
                                          "up" if up else "down"])

    def kill_host(self, name: str) -> None:
        """The machine ``name`` fails: its holder (PID 1 of its pid namespace) is killed, with everything in it."""
        _end([self.holders[name]])

    def close(self) -> None:
        _end(list(self.holders.values()))
        self._release_dirs()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _claim_dirs(self) -> None:
        """Create the missing mount points (listed in ``DIRS_LOCK``) and hold a shared lock on it while we live."""
        with _dirs_mutex():
            self._lock = os.open(DIRS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            for d in PRIVATE_DIRS:
                if not os.path.isdir(d):
                    os.makedirs(d, mode=0o755)
                    self.created_dirs.append(d)
                    os.lseek(self._lock, 0, os.SEEK_END)
                    os.write(self._lock, f"{d}\n".encode())

    def _release_dirs(self) -> None:
        """The last harness to close removes the mount points any harness created (none is in use any more)."""
        fd, self._lock = self._lock, None
        if fd is None:
            return
        with _dirs_mutex():
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another harness lives: the last of them removes them
                os.lseek(fd, 0, os.SEEK_SET)
                for d in reversed(os.read(fd, 65536).decode().split()):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass  # not empty or gone: something else uses it now, not ours to remove
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
                self.created_dirs.clear()

    # -- use ------------------------------------------------------------------------------------------------
    def inventory(self, command: str, *, user: str = "root", extra: dict | None = None) -> Path:
        """An inventory file (``--hosts``) for these hosts; ``command`` runs podlab on them."""
        hosts = [{"name": n, "address": self.address(n), "user": user, "key": str(self.key),
                  "knownHosts": str(self.known_hosts), "command": command, **((extra or {}).get(n, {}))}
                 for n in self.names]
        path = self.dir / "inventory.yaml"
        path.write_text(json.dumps({"hosts": hosts}, indent=1) + "\n")  # JSON is YAML
        return path

    def controller_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the controller's network and mount namespaces."""
        return ["nsenter", "-t", str(self.holders["controller"].pid), "-n", "-m", "--", *argv]

    def host_run(self, name: str, argv: list[str], check: bool = False) -> subprocess.CompletedProcess:
        """``argv`` run on host ``name`` (all its namespaces): what a user logged in there would see."""
        h = self.holders[name]
        return subprocess.run(["nsenter", "-t", str(h.pid), "-n", "-m", "-p", "-u", "--", *argv], check=check,
                              capture_output=True, text=True)


@contextlib.contextmanager
def _dirs_mutex():
    """Serialises creating, listing and removing the shared mount points between harnesses."""
    fd = os.open(f"{DIRS_LOCK}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _end(holders: list[Holder]) -> None:
    for h in holders:
        if h.alive():
            os.kill(h.pid, signal.SIGKILL)
        if h.popen is not None and h.popen.pid != h.pid and alive(h.popen.pid, None):
            h.popen.kill()  # unshare itself, which waits for its child
    deadline = time.monotonic() + 10
    for h in holders:
        if h.popen is not None:
            try:
                h.popen.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass  # unshare outlived its child's death by 10 s: the alive() loop below still waits for the holder
            if h.popen.stdout:
                h.popen.stdout.close()
        while h.alive() and time.monotonic() < deadline:
            time.sleep(0.01)


def kill_recorded(workdir: str | Path) -> None:
    """End the holders a crashed run recorded in ``workdir/holders.json`` (by PID and start time only)."""
    try:
        entries = json.loads((Path(workdir) / "holders.json").read_text())
    except (FileNotFoundError, ValueError):
        return
    _end([Holder(e["name"], e["pid"], e["start"]) for e in entries])
