"""kubectl exec, attach, logs and port-forward of pods on any of 3 emulated hosts, through the controller's API
server (fixtures as in ``test_multihost_api``: the real kubectl and the Python client inside the controller's
namespaces).

Proven from what the hosts' kernels and processes show: ``kubectl exec`` runs in the pod's namespace on the pod's
own host (the host's hostname, the pod's IP on its eth0), passes the exit code ("command terminated with exit code
N", kubectl exits N), stdin (``-i``; ``kubectl cp`` both ways, byte-exact) and a tty (``-it`` under a real pty:
``tty`` names a pts, ``stty size`` the window kubectl sent); a kubectl that goes away leaves no process on the host;
``kubectl logs --tail`` and ``-f`` (a line the container writes after the follow started arrives); ``podlab logs
-f`` across hosts, until Ctrl-C and until the pod ends; ``kubectl port-forward`` to a pod's port on another host; a
host whose cable is pulled mid-exec named in kubectl's error (the command ended there once it is back); ``kubectl
attach -i`` and ``-it`` to a container's own process on another host, ``kubectl run -i --rm --restart=Never``;
``podlab exec -i`` and ``podlab run -i --rm`` there too. One lab for the module; nothing left on any host
afterwards.
"""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import KUBECONFIG, KUBECTL, ROOT
from tests.integration.test_multihost import COMMAND, PY, controller_records, ctl, host_leftovers

LAB = "mhx-streams"
SAY = f"/tmp/mhx-say-{os.getpid()}"  # the logger container prints what appears in this file (then removes it)
LOGGER = (f"for i in 1 2 3 4 5; do echo line $i; done; while true; do if [ -f {SAY} ]; then cat {SAY}; "
          f"rm -f {SAY}; fi; sleep 0.1; done")
TOPOLOGY = f"""version: 1
name: {LAB}
routing: vxlan
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}]
pods:
  - {{name: web-1, node: node-1, containers: [{{name: web, image: netexec, ports: [{{containerPort: 8080}}]}}]}}
  - {{name: sh-2, node: node-2, containers: [{{name: sh, image: busybox, command: ["sleep", "86400"]}}]}}
  - name: logger-3
    node: node-3
    containers: [{{name: log, image: busybox, command: {json.dumps(LOGGER)}}}]
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, prefix="mhx") as hs:
        yield hs


@pytest.fixture(scope="module")
def lab(hosts: EmulatedHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    topo = tmp_path_factory.mktemp("mhx") / "t.yaml"
    topo.write_text(TOPOLOGY)
    r = ctl(hosts, "up", str(topo), "--hosts", str(hosts.inventory(COMMAND)))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        nodes = json.loads(kubectl(hosts, "get", "nodes", "-o", "json").stdout)["items"]
        yield {"host": {n["metadata"]["name"]: n["metadata"]["labels"]["podlab.io/host"] for n in nodes}}
    finally:
        if os.path.exists(SAY):
            os.unlink(SAY)
        dn = ctl(hosts, "down", LAB)
        assert dn.returncode == 0, dn.stdout + dn.stderr
        # a session whose connection lived through the cable pulled from mhx2 (the last test) has its FIN delivered
        # at its next retransmission, backed off during the outage (measured: 8.8 s): until then its host serve runs
        assert host_leftovers(hosts, wait=30) == {} and controller_records(hosts) == []


def kubectl_argv(hosts: EmulatedHosts, *args: str) -> list[str]:
    return hosts.controller_argv([str(KUBECTL), "--context", f"podlab-{LAB}", *args])


def kubectl(hosts: EmulatedHosts, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(kubectl_argv(hosts, *args), capture_output=True, text=True, input=input, timeout=timeout)
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def stream_processes(hosts: EmulatedHosts) -> dict[str, list[str]]:
    """The session relays (``host stream``) and the commands of this module's execs still running on each host."""
    out = {}
    for h in hosts.names:
        ps = hosts.host_run(h, ["ps", "-eo", "pid=,args="]).stdout.splitlines()
        found = [p.strip() for p in ps if "host stream" in p or "sleep 31" in p]
        if found:
            out[h] = found
    return out


def no_stream_processes(hosts: EmulatedHosts, wait: float = 5.0) -> dict[str, list[str]]:
    deadline = time.monotonic() + wait
    while (found := stream_processes(hosts)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the pty's other side closed
                break
            if not chunk:
                break
            out += chunk
    return out


def test_exec_runs_on_the_pods_host_with_its_exit_code(hosts: EmulatedHosts, lab: dict) -> None:
    pods = {p["metadata"]["name"]: p for p in json.loads(kubectl(hosts, "get", "pods", "-o", "json").stdout)["items"]}
    for name, node in (("web-1", "node-1"), ("sh-2", "node-2"), ("logger-3", "node-3")):
        r = kubectl(hosts, "exec", name, "--", "sh", "-c", "cat /proc/sys/kernel/hostname; ip -4 -o addr show eth0; "
                    "echo to-stderr >&2; exit 3", check=False)
        assert r.returncode == 3, r.stdout + r.stderr
        assert "command terminated with exit code 3" in r.stderr and "to-stderr" in r.stderr, r.stderr
        host, addr = r.stdout.splitlines()[0], r.stdout.splitlines()[1]
        assert host == lab["host"][node], (name, r.stdout)
        assert f" {pods[name]['status']['podIP']}/" in addr, (name, r.stdout)
    r = kubectl(hosts, "exec", "sh-2", "--", "true")
    assert r.stdout == "" and r.returncode == 0
    r = kubectl(hosts, "exec", "sh-2", "--", "nosuch-command", check=False)
    assert r.returncode != 0 and 'exec: "nosuch-command": executable file not found in $PATH' in r.stderr, r.stderr
    r = kubectl(hosts, "exec", "gone", "--", "true", check=False)
    assert r.returncode == 1 and 'pods "gone" not found' in r.stderr, r.stderr
    assert no_stream_processes(hosts) == {}


def test_exec_passes_stdin(hosts: EmulatedHosts, lab: dict) -> None:
    data = "".join(f"line {i} of the input\n" for i in range(2000))  # 50 kB: more than one read
    r = kubectl(hosts, "exec", "-i", "logger-3", "--", "sh", "-c", "tr a-z A-Z | md5sum; echo end", input=data)
    import hashlib
    assert r.stdout.split()[0] == hashlib.md5(data.upper().encode()).hexdigest() and r.stdout.split()[-1] == "end"


def test_kubectl_cp_both_ways_is_byte_exact(hosts: EmulatedHosts, lab: dict, tmp_path) -> None:
    """``kubectl cp`` is tar over exec's stdin and stdout: binary, both directions, through a pod on another host
    (its file system is the host's: the file is removed at the end)."""
    data = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(data)
    remote = f"/tmp/mhx-cp-{os.getpid()}"
    try:
        kubectl(hosts, "cp", str(tmp_path / "blob"), f"sh-2:{remote}")
        import hashlib
        r = kubectl(hosts, "exec", "sh-2", "--", "md5sum", remote)
        assert r.stdout.split()[0] == hashlib.md5(data).hexdigest()
        kubectl(hosts, "cp", f"sh-2:{remote}", str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == data
    finally:
        kubectl(hosts, "exec", "sh-2", "--", "rm", "-f", remote, check=False)


def test_exec_with_a_tty_under_a_real_terminal(hosts: EmulatedHosts, lab: dict) -> None:
    """``kubectl exec -it`` from a pty of 33x111: the command sees a tty of that size, typed input is echoed by
    the pod's own pty, and the shell's exit code is kubectl's."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    p = subprocess.Popen(kubectl_argv(hosts, "exec", "-it", "sh-2", "--", "sh"), stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        time.sleep(1.0)
        os.write(master, b"tty; stty size; echo $TERM; exit 7\r")
        out = read_until(master, b"xterm\r\n")
        assert b"/dev/pts/" in out and b"33 111" in out, out
        assert p.wait(timeout=20) == 7
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert no_stream_processes(hosts) == {}


def test_python_client_exec_on_the_third_host(hosts: EmulatedHosts, lab: dict) -> None:
    code = ("import json, sys\n"
            "from kubernetes import client, config\nfrom kubernetes.stream import stream\n"
            f"config.load_kube_config(context='podlab-{LAB}')\n"
            "v1 = client.CoreV1Api()\n"
            "r = stream(v1.connect_get_namespaced_pod_exec, 'logger-3', 'default', command=['sh', '-c', "
            "'cat /proc/sys/kernel/hostname; exit 5'], stderr=True, stdin=False, stdout=True, tty=False, "
            "_preload_content=False)\n"
            "r.run_forever(timeout=30)\n"
            "print(json.dumps({'out': r.read_stdout(), 'rc': r.returncode}))\n")
    r = subprocess.run(hosts.controller_argv(["env", f"KUBECONFIG={KUBECONFIG}", PY, "-c", code]),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert got == {"out": lab["host"]["node-3"] + "\n", "rc": 5}, got


def test_a_client_that_leaves_leaves_nothing_on_the_host(hosts: EmulatedHosts, lab: dict) -> None:
    p = subprocess.Popen(kubectl_argv(hosts, "exec", "sh-2", "--", "sleep", "31"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not any("sleep 31" in line for found in stream_processes(hosts).values() for line in found):
            assert time.monotonic() < deadline, "the exec never started on the host"
            time.sleep(0.1)
    finally:
        p.kill()
        p.wait()
    assert no_stream_processes(hosts) == {}


def test_logs_tail_and_follow(hosts: EmulatedHosts, lab: dict) -> None:
    assert kubectl(hosts, "logs", "logger-3").stdout == "".join(f"line {i}\n" for i in range(1, 6))
    assert kubectl(hosts, "logs", "logger-3", "-c", "log", "--tail", "2").stdout == "line 4\nline 5\n"
    p = subprocess.Popen(kubectl_argv(hosts, "logs", "-f", "--tail", "1", "logger-3"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert read_until(p.stdout.fileno(), b"line 5\n") == b"line 5\n"
        with open(SAY, "w") as f:
            f.write("after the follow began\n")
        out = read_until(p.stdout.fileno(), b"began\n")
        assert out == b"after the follow began\n", out
    finally:
        p.kill()
        p.wait()
        for f in (p.stdout, p.stderr):
            f and f.close()
    assert no_stream_processes(hosts) == {}


def test_port_forward_to_a_pod_on_another_host(hosts: EmulatedHosts, lab: dict) -> None:
    """Two connections through one forward (a channel each); a refused port says so in the kubelet's words."""
    # a pod reported Running may still be binding its port (kubectl's forward ends at the first refusal)
    kubectl(hosts, "exec", "web-1", "--", "sh", "-c", "for i in $(seq 150); do ss -Hltn 'sport = :8080' | grep -q . "
            "&& exit 0; sleep 0.1; done; exit 1")
    p = subprocess.Popen(kubectl_argv(hosts, "port-forward", "pod/web-1", "18631:8080"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert b"Forwarding from 127.0.0.1:18631" in read_until(p.stdout.fileno(), b"\n")
        code = ("import urllib.request as u; "
                "print(u.urlopen('http://127.0.0.1:18631/hostname', timeout=10).read().decode())")
        for _ in range(2):  # two connections: a channel each
            r = subprocess.run(hosts.controller_argv([PY, "-c", code]), capture_output=True, text=True, timeout=30)
            assert r.returncode == 0 and r.stdout.strip() == "web-1", r.stdout + r.stderr
    finally:
        p.kill()
        p.wait()
        for f in (p.stdout, p.stderr):
            f and f.close()
    p = subprocess.Popen(kubectl_argv(hosts, "port-forward", "pod/web-1", "18632:81"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stderr is not None
        assert b"Forwarding from 127.0.0.1:18632" in read_until(p.stdout.fileno(), b"\n")
        code = "import socket; s = socket.create_connection(('127.0.0.1', 18632), timeout=10); print(s.recv(1))"
        subprocess.run(hosts.controller_argv([PY, "-c", code]), capture_output=True, text=True, timeout=30)
        err = read_until(p.stderr.fileno(), b"refused", timeout=15).decode()
        assert f"network namespace \\\"/run/netns/{LAB}-web-1\\\"" in err, err  # (klog quotes it: \")
        assert "failed to connect to localhost:81 inside namespace" in err, err
        assert "dial tcp4 127.0.0.1:81: connect: connection refused" in err, err
    finally:
        p.kill()
        p.wait()
        for f in (p.stdout, p.stderr):
            f and f.close()
    assert no_stream_processes(hosts) == {}


ATTACHABLE = """apiVersion: v1
kind: Pod
metadata: {name: echo-3}
spec:
  nodeName: node-3
  restartPolicy: Never
  containers:
  - name: echo
    image: busybox
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'while read l; do echo "echo:$l"; done; echo bye']
---
apiVersion: v1
kind: Pod
metadata: {name: term-2}
spec:
  nodeName: node-2
  restartPolicy: Never
  containers:
  - {name: term, image: busybox, stdin: true, tty: true, command: [sh]}
"""


def test_attach_to_a_containers_own_process_on_other_hosts(hosts: EmulatedHosts, lab: dict) -> None:
    """``kubectl attach -i`` joins the container's own process (stdinOnce: its input ends with ours); ``attach
    -it`` from a pty of 33x111 reaches the container's own tty, with that size; ``kubectl run -i --rm
    --restart=Never`` on another host gets its input, and exits with the container's exit code."""
    kubectl(hosts, "apply", "-f", "-", input=ATTACHABLE)
    try:
        r = kubectl(hosts, "attach", "-i", "echo-3", input="a\nb\n", timeout=60)
        assert r.stdout.split() == ["echo:a", "echo:b", "bye"], r.stdout + r.stderr
        master, slave = pty.openpty()
        import fcntl
        import struct
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        p = subprocess.Popen(kubectl_argv(hosts, "attach", "-it", "term-2"), stdin=slave, stdout=slave,
                             stderr=slave, start_new_session=True)
        os.close(slave)
        try:
            time.sleep(1.0)
            os.write(master, b"echo size $(stty size) on $(tty)\r")
            out = read_until(master, b"/dev/pts/")
            assert b"size 33 111 on /dev/pts/" in out, out
            os.write(master, b"exit\r")
            assert p.wait(timeout=20) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            os.close(master)
        r = kubectl(hosts, "run", "-i", "--rm", "--restart=Never", "--image=busybox", "--overrides",
                    '{"spec": {"nodeName": "node-3"}}', "--command", "mhx-run", "--", "sh", "-c",
                    "read x; echo got $x; exit 3", input="hi\n", check=False, timeout=90)
        assert r.stdout.splitlines()[0] == "got hi", r.stdout + r.stderr
        assert r.returncode == 3, r.stdout + r.stderr  # the container's exit code
        assert "pod default/mhx-run terminated (Error)" in r.stderr, r.stderr
        assert 'pod "mhx-run" deleted' in r.stdout, r.stdout
    finally:
        kubectl(hosts, "delete", "pod", "echo-3", "term-2", "--wait=false")
    assert no_stream_processes(hosts) == {}


def test_podlab_logs_follow_until_ctrl_c_and_until_the_pod_ends(hosts: EmulatedHosts, lab: dict) -> None:
    argv = hosts.controller_argv(["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator", "logs", "-f", "logger-3"])
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert p.stdout is not None
        assert read_until(p.stdout.fileno(), b"began\n").startswith(b"line 1\nline 2\n")
        with open(SAY, "w") as f:
            f.write("seen by podlab\n")
        assert read_until(p.stdout.fileno(), b"podlab\n").endswith(b"seen by podlab\n")
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert no_stream_processes(hosts) == {}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert p.stdout is not None
        assert read_until(p.stdout.fileno(), b"podlab\n").startswith(b"line 1\n")
        kubectl(hosts, "delete", "pod", "logger-3", "--wait=false")
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            f and f.close()
    assert no_stream_processes(hosts) == {}


def test_podlab_exec_and_run_with_stdin_on_other_hosts(hosts: EmulatedHosts, lab: dict) -> None:
    """``podlab exec -i`` and ``podlab run -i --rm`` across hosts: stdin reaches the command on the pod's host, its
    output and exit status come back."""
    def podlab(*args: str, input: str) -> subprocess.CompletedProcess:
        return subprocess.run(hosts.controller_argv(["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator", *args]),
                              capture_output=True, text=True, input=input, timeout=120, cwd=ROOT)
    r = podlab("exec", "-i", "sh-2", "--", "sh", "-c", "tr a-z A-Z; cat /proc/sys/kernel/hostname; exit 4",
               input="across hosts\n")
    assert (r.returncode, r.stdout) == (4, "ACROSS HOSTS\nmhx2\n"), r.stdout + r.stderr
    r = podlab("run", "mhx-in", "--image", "busybox", "--node", "node-3", "-i", "--rm", "--", "sh", "-c",
               "read x; echo got $x on $(cat /proc/sys/kernel/hostname)", input="hi\n")
    assert r.returncode == 0 and r.stdout == "got hi on mhx3\n", r.stdout + r.stderr
    assert "mhx-in" not in kubectl(hosts, "get", "pods").stdout
    assert no_stream_processes(hosts) == {}


def test_a_host_that_goes_away_mid_exec_ends_it_naming_the_host(hosts: EmulatedHosts, lab: dict) -> None:
    """The cable of the pod's host is pulled while an exec runs there: no FIN ever comes, the relay's connection
    finds the host gone by its unacknowledged keepalives, and kubectl ends with a Status naming the host. Once the
    host is back, the command's next output meets the closed connection and the host's relay ends it."""
    p = subprocess.Popen(kubectl_argv(hosts, "exec", "sh-2", "--", "sh", "-c", "while :; do echo tick; sleep 1; done"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "tick\n"
        hosts.set_port_up("mhx2", False)
        t0 = time.monotonic()
        _, err = p.communicate(timeout=40)
        took = time.monotonic() - t0
    finally:
        hosts.set_port_up("mhx2", True)
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode != 0 and "host mhx2 stopped answering during the exec" in err, err
    assert took < 30, took
    assert no_stream_processes(hosts, wait=20) == {}
