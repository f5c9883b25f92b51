"""The streaming subresources with the real kubectl and the Python client on a live lab: ``exec`` (streams, exit
codes, a pty, errors, no orphan when the client goes), ``logs`` and ``port-forward`` (to a port bound to the pod's
own loopback, which only a connection made inside the pod's namespace can reach)."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

from emulator.apiserver.server import status_path
from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.proc import journal
from emulator.proc.lifecycle import alive
from emulator.state.store import read_json
from emulator.topology.loader import loads
from tests.integration.conftest import kubectl_runner, unique_name

NETEXEC = "[{name: c, image: netexec, ports: [{containerPort: 8080}]}]"
TOPOLOGY = f"""
version: 1
name: x
nodes: [{{name: node-1}}, {{name: node-2}}]
pods:
  - {{name: web-1, node: node-1, labels: {{app: web}}, containers: {NETEXEC}}}
  - {{name: web-2, node: node-2, labels: {{app: web}}, containers: {NETEXEC}}}
  - {{name: two, node: node-1, containers: [{{name: a, image: busybox}}, {{name: b, image: busybox}}]}}
services:
  - {{name: web, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
deployments:
  - {{name: hello, replicas: 1, labels: {{app: hello}}, containers: {NETEXEC}}}
"""


@pytest.fixture(scope="module")
def lab():
    name = unique_name("strm")
    try:
        yield Lab.up(loads(TOPOLOGY, "<streams>", name=name))
    finally:
        teardown.destroy(name)


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    return kubectl_runner(lab.name, tmp_path_factory.mktemp("kubectl-cache"))


def server_pid(lab: Lab) -> int:
    return read_json(status_path(lab.paths))["pid"]


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out |= {int(x) for x in f.read().split()}
        except FileNotFoundError:  # that thread ended meanwhile: it has no children left
            continue
    return out


def test_exec_streams_env_and_exit_code(lab: Lab, kubectl) -> None:
    ip = lab.pod("web-1").ip
    r = kubectl("exec", "web-1", "--", "sh", "-c", "echo out; echo err >&2; ip -4 -o addr show eth0; "
                "echo $POD_NAME $POD_IP; exit 3", check=False)
    assert r.returncode == 3
    assert r.stderr.splitlines() == ["err", "command terminated with exit code 3"]
    lines = r.stdout.splitlines()
    assert lines[0] == "out" and f"inet {ip}/" in lines[1] and lines[2] == f"web-1 {ip}"
    assert kubectl("exec", "-i", "web-1", "--", "wc", "-l", input="a\nb\nc\n").stdout.strip() == "3"
    assert kubectl("exec", "web-1", "--", "pwd").stdout == "/\n"


def test_exec_errors_as_a_cluster_gives_them(lab: Lab, kubectl) -> None:
    r = kubectl("exec", "nosuch", "--", "true", check=False)
    assert r.returncode == 1 and 'Error from server (NotFound): pods "nosuch" not found' in r.stderr
    r = kubectl("exec", "web-1", "-c", "nosuch", "--", "true", check=False)
    assert r.returncode == 1 and "container nosuch is not valid for pod web-1" in r.stderr
    r = kubectl("exec", "web-1", "--", "nosuchcmd", check=False)
    assert r.returncode == 1 and 'exec: "nosuchcmd": executable file not found in $PATH' in r.stderr
    r = kubectl("exec", "two", "--", "true", check=False)
    assert r.returncode == 0 and 'Defaulted container "a" out of: a, b' in r.stderr
    assert kubectl("exec", "two", "-c", "b", "--", "sh", "-c", "echo $HOSTNAME").stdout == "two\n"


def _drive(argv: list[str], lines: list[bytes], rows: int = 40, cols: int = 120, settle: float = 2.0,
           timeout: float = 30) -> tuple[str, int]:
    """Run ``argv`` on a new pty of the given size, type ``lines`` into it; (what it printed, its exit code)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = bytearray()

    def read(for_s: float) -> None:
        end = time.monotonic() + for_s
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    d = os.read(fd, 65536)
                except OSError:
                    return
                if not d:
                    return
                out.extend(d)
    read(settle)
    for line in lines:
        os.write(fd, line)
        read(1.0)
    deadline = time.monotonic() + timeout
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"{argv} did not end: {out.decode(errors='replace')}")
        read(0.2)
    os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(st)


def test_exec_tty_gets_a_pty_with_the_window_size(lab: Lab, kubectl) -> None:
    out, code = _drive([*kubectl.argv, "exec", "-it", "web-1", "--", "sh"],
                       [b"tty; stty size; echo TERM=$TERM\r", b"exit 7\r"])
    assert code == 7, out
    assert re.search(r"/dev/pts/\d+", out) and "40 120" in out and "TERM=xterm" in out
    assert "command terminated with exit code 7" in out


def test_exec_ends_with_its_client(lab: Lab, kubectl) -> None:
    p = subprocess.Popen([*kubectl.argv, "exec", "web-1", "--", "sleep", "4321"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        found = None
        deadline = time.monotonic() + 20
        while found is None and time.monotonic() < deadline:
            found = next((e for e in journal.entries(lab.paths.proc_journal) if "sleep 4321" in e.what
                          and alive(e.pid, e.start)), None)
            time.sleep(0.1)
        assert found is not None, "the exec'd command never named itself in the lab's process journal"
        assert found.kind == "tool"
        assert os.stat(f"/proc/{found.pid}/ns/net").st_ino == os.stat(netns.path(lab.pod("web-1").netns)).st_ino
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 5
    while alive(found.pid, found.start) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(found.pid, found.start), "the command outlived its kubectl"


def _pids_running(argv: list[str]) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[:-1] == [a.encode() for a in argv]:
                        out.append(int(d))
            except OSError:
                continue  # ended while we looked
    return out


def test_exec_tty_session_ends_with_its_client(lab: Lab, kubectl) -> None:
    """A shell's background job on a tty has a process group of its own: it goes with the client too."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(kubectl.argv[0], [*kubectl.argv, "exec", "-it", "web-1", "--", "sh"])
    try:
        time.sleep(2.0)
        os.write(fd, b"sleep 4545 &\r")
        deadline = time.monotonic() + 10
        while not _pids_running(["sleep", "4545"]):
            assert time.monotonic() < deadline, "the background job never started"
            time.sleep(0.1)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    deadline = time.monotonic() + 5
    while _pids_running(["sleep", "4545"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pids_running(["sleep", "4545"]), "a background job of the exec'd shell outlived its client"


def test_python_client_stream_exec(lab: Lab) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream
    api = client.CoreV1Api(config.new_client_from_config(context=f"podlab-{lab.name}"))
    out = stream(api.connect_get_namespaced_pod_exec, "web-2", "default", command=["sh", "-c", "echo $POD_NAME"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "web-2\n"
    r = stream(api.connect_get_namespaced_pod_exec, "web-2", "default", command=["sh", "-c", "read x; echo got $x; "
               "exit 4"], stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    r.write_stdin("abc\n")
    r.run_forever(timeout=10)
    assert r.read_stdout() == "got abc\n" and r.returncode == 4


def test_concurrent_execs_leave_nothing_behind(lab: Lab) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream
    pid = server_pid(lab)
    api = client.CoreV1Api(config.new_client_from_config(context=f"podlab-{lab.name}"))
    stream(api.connect_get_namespaced_pod_exec, "web-1", "default", command=["true"], stdout=True, stderr=True,
           stdin=False, tty=False)  # warm: the connection pool, the server's threads
    fds0 = len(os.listdir(f"/proc/{pid}/fd"))
    results: dict[int, str] = {}

    def one(i: int) -> None:
        results[i] = stream(api.connect_get_namespaced_pod_exec, "web-1" if i % 2 else "web-2", "default",
                            command=["sh", "-c", f"sleep 0.5; echo {i}"], stdout=True, stderr=True, stdin=False,
                            tty=i % 10 == 0)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == list(range(100))
    assert all(results[i].strip() == str(i) for i in results), results
    deadline = time.monotonic() + 10
    while (children(pid) or len(os.listdir(f"/proc/{pid}/fd")) > fds0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not children(pid), "exec'd processes left behind"
    assert len(os.listdir(f"/proc/{pid}/fd")) <= fds0, "the API server holds more file descriptors than before"


def test_logs(lab: Lab, kubectl) -> None:
    out = kubectl("logs", "web-1").stdout
    assert "Started HTTP server on port 8080" in out
    kubectl("exec", "web-1", "--", "wget", "-qO-", "127.0.0.1:8080/hostname")
    last = kubectl("logs", "web-1", "--tail", "1").stdout
    assert last.count("\n") == 1 and '"GET /hostname HTTP/1.1" 200' in last
    ts = kubectl("logs", "web-1", "--tail", "1", "--timestamps").stdout
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", ts) and ts.endswith(last)
    both = kubectl("logs", "-l", "app=web", "--prefix", "--tail", "1").stdout.splitlines()
    assert {line.split()[0] for line in both} == {"[pod/web-1/c]", "[pod/web-2/c]"}
    r = kubectl("logs", "web-1", "--previous", check=False)
    assert r.returncode == 1 and 'previous terminated container "c" in pod "web-1" not found' in r.stderr
    r = kubectl("logs", "two", "-c", "nosuch", check=False)
    assert r.returncode == 1 and "container nosuch is not valid for pod two" in r.stderr
    assert kubectl("logs", "web-1", "--since", "1h").stdout == kubectl("logs", "web-1").stdout


def test_logs_of_a_deployment(lab: Lab, kubectl) -> None:
    out = kubectl("logs", "deploy/hello", "--tail", "5").stdout
    assert "Started HTTP server on port 8080" in out


def test_exec_and_logs_of_pods_that_do_not_run(lab: Lab, kubectl) -> None:
    kubectl("run", "never", "--image=busybox", "--restart=Never", "--command", "--", "nosuchprog")
    kubectl("run", "always", "--image=busybox", "--command", "--", "nosuchprog")
    try:
        deadline = time.monotonic() + 20
        while kubectl("get", "pod", "never", "-o", "jsonpath={.status.phase}").stdout != "Failed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        r = kubectl("exec", "never", "--", "true", check=False)
        assert r.returncode == 1 and "cannot exec into a container in a completed pod; current phase is Failed" \
            in r.stderr
        assert kubectl("logs", "never").stdout == ""
        r = kubectl("exec", "always", "--", "true", check=False)
        assert r.returncode == 1 and 'unable to upgrade connection: container not found ("always")' in r.stderr
    finally:
        kubectl("delete", "pod", "never", "always", "--wait=true", check=False)


def test_logs_follow_streams_new_lines(lab: Lab, kubectl) -> None:
    p = subprocess.Popen([*kubectl.argv, "logs", "-f", "--tail", "0", "web-2"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        kubectl("exec", "web-2", "--", "wget", "-qO-", "127.0.0.1:8080/echo?msg=followme")
        ready = select.select([p.stdout], [], [], 10)[0]
        assert ready, "no line arrived on logs -f"
        assert "/echo?msg=followme" in p.stdout.readline()
    finally:
        p.kill()
        p.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forward(kubectl, *args: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    p = subprocess.Popen([*kubectl.argv, "port-forward", *args[:-1], f"{port}:{args[-1]}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith(f"Forwarding from 127.0.0.1:{port}"), line + p.stderr.read()
    return p, port


def _get(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode().split("\r\n\r\n", 1)[1]


def test_port_forward_pod_service_and_loopback_only_port(lab: Lab, kubectl) -> None:
    p, port = _forward(kubectl, "pod/web-1", "8080")
    try:
        assert _get(port, "/hostname") == "web-1"
        assert _get(port, "/clientip").startswith("127.0.0.1:")  # dialled from the pod's own localhost
    finally:
        p.kill()
        p.wait()
    p, port = _forward(kubectl, "svc/web", "80")
    try:
        assert _get(port, "/hostname") in ("web-1", "web-2")
    finally:
        p.kill()
        p.wait()
    # a server bound to the pod's 127.0.0.1 only: reachable through port-forward, from nowhere else
    srv = subprocess.Popen([*kubectl.argv, "exec", "web-2", "--", "socat", "TCP-LISTEN:9000,bind=127.0.0.1,"
                            "reuseaddr,fork", "SYSTEM:echo loopback-only"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        p, port = _forward(kubectl, "pod/web-2", "9000")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                assert s.makefile().readline() == "loopback-only\n"
        finally:
            p.kill()
            p.wait()
    finally:
        srv.kill()
        srv.wait()


def test_port_forward_refused_port(lab: Lab, kubectl) -> None:
    p, port = _forward(kubectl, "pod/web-1", "81")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert s.recv(100) == b""
        _, err = p.communicate(timeout=10)
        assert "failed to connect to localhost:81 inside namespace" in err and "connection refused" in err
        assert "error: lost connection to pod" in err
    finally:
        p.kill()
        p.wait()


def test_python_client_portforward(lab: Lab) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward
    api = client.CoreV1Api(config.new_client_from_config(context=f"podlab-{lab.name}"))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web-2", "default", ports="8080")
    s = pf.socket(8080)
    s.setblocking(True)
    s.sendall(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data.endswith(b"\r\n\r\nweb-2") and pf.error(8080) is None


def test_seed_session_run_rm_it_through_a_pty(lab: Lab, kubectl) -> None:
    """../shared/seeds/001: ``kubectl run nettest --image=busybox --rm -it --restart=Never -- sh``, then ping and
    wget another pod from inside; the shell's exit code is kubectl's, and the pod is gone afterwards."""
    ip = lab.pod("web-2").ip
    out, code = _drive([*kubectl.argv, "run", "nettest", "--image=busybox", "--rm", "-it", "--restart=Never", "--",
                        "sh"], [f"ping -c1 -W2 {ip}\r".encode(), f"wget -qO- http://{ip}:8080/hostname; echo\r".encode(),
                                b"echo me=$HOSTNAME; exit 3\r"], settle=3.0)
    assert code == 3, out
    assert "If you don't see a command prompt, try pressing enter." in out
    assert "1 packets transmitted, 1 received" in out or "1 packets transmitted, 1 packets received" in out
    assert "\r\nweb-2\r\n" in out and "me=nettest" in out
    assert 'pod "nettest" deleted' in out
    assert kubectl("get", "pod", "nettest", check=False).returncode == 1


def test_run_i_rm_with_stdin_from_a_pipe(lab: Lab, kubectl) -> None:
    ip = lab.pod("web-1").ip
    r = kubectl("run", "piped", "--image=busybox", "--rm", "-i", "--restart=Never", "--", "sh",
                input=f"echo hi from $HOSTNAME; wget -qO- http://{ip}:8080/hostname; echo; exit 5\n", check=False)
    assert r.returncode == 5, r.stderr
    assert r.stdout.splitlines()[:2] == ["hi from piped", "web-1"]
    assert "pod default/piped terminated (Error)" in r.stderr
    r = kubectl("run", "ok", "--image=busybox", "--rm", "-i", "--restart=Never", "--", "sh", input="echo fine\n")
    assert r.stdout.startswith("fine\n") and 'pod "ok" deleted' in r.stdout + r.stderr


def test_attach_to_a_plain_container_follows_its_output(lab: Lab, kubectl) -> None:
    """An attach to a container without stdin follows what it prints from then on. Nothing says when the
    session has begun (kubectl prints nothing of its own), so a request is made again and again, each with its
    own message, until one arrives through the attach: what arrives is one of them (no waiting a fixed time,
    which on a loaded machine may end before kubectl has even connected)."""
    p = subprocess.Popen([*kubectl.argv, "attach", "web-1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 60
        sent = 0
        while not select.select([p.stdout], [], [], 0.5)[0]:
            assert p.poll() is None, f"kubectl attach ended: {p.stderr.read()}"
            assert time.monotonic() < deadline, "nothing arrived through attach"
            kubectl("exec", "web-1", "--", "wget", "-qO-", f"127.0.0.1:8080/echo?msg=attached-{sent}")
            sent += 1
        line = p.stdout.readline()
        assert re.search(r"/echo\?msg=attached-(\d+)", line) and \
            int(re.search(r"attached-(\d+)", line).group(1)) < sent, line
    finally:
        p.kill()
        p.wait()


def test_attach_to_a_stdin_container_and_its_exit_code_in_the_status(lab: Lab, kubectl) -> None:
    kubectl("run", "waiter", "--image=busybox", "--restart=Never", "-i", "--attach=false", "--", "sh")
    try:
        kubectl("wait", "--for=condition=Ready", "pod/waiter", "--timeout=30s")
        r = kubectl("attach", "-i", "waiter", input="echo $((6*7)); exit 9\n", check=False)
        assert "42" in r.stdout.splitlines()
        # the agent records the holder's exit: kubectl's own watch waits for it (a poll of kubectl processes on
        # a loaded machine spends its seconds starting kubectl, not looking)
        r = kubectl("wait", "--for=jsonpath={.status.phase}=Failed", "pod/waiter", "--timeout=60s", check=False)
        assert r.returncode == 0, f"the pod never turned Failed: {r.stderr}"
        term = kubectl("get", "pod", "waiter", "-o", "jsonpath={.status.containerStatuses[0].state.terminated."
                       "exitCode}").stdout
        assert term == "9"
        assert kubectl("get", "pod", "waiter").stdout.split()[7] == "Error"
        assert kubectl("logs", "waiter").stdout == "42\n"
    finally:
        kubectl("delete", "pod", "waiter", "--wait=true", check=False)


HOSTNET = """apiVersion: v1
kind: Pod
metadata: {name: hostnet, namespace: kube-system}
spec:
  hostNetwork: true
  nodeName: node-2
  containers:
  - {name: agent, image: netexec, args: [netexec, --http-port=10250]}
"""


def test_host_network_pod_runs_in_its_node(lab: Lab, kubectl) -> None:
    node_ip = lab.node("node-2").ip
    kubectl("apply", "-f", "-", input=HOSTNET)
    try:
        kubectl("wait", "-n", "kube-system", "--for=condition=Ready", "pod/hostnet", "--timeout=30s")
        row = kubectl("get", "pod", "-n", "kube-system", "hostnet", "-o", "wide").stdout.splitlines()[1].split()
        assert row[5] == node_ip and row[6] == "node-2"
        assert f"inet {node_ip}/" in kubectl("exec", "-n", "kube-system", "hostnet", "--", "ip", "-4", "-o", "addr",
                                              "show", "eth0").stdout
        # seed 000's third rule: an agent on a node (a hostNetwork pod) and the pods reach each other
        assert kubectl("exec", "web-1", "--", "wget", "-qO-", f"http://{node_ip}:10250/hostname").stdout == "hostnet"
        assert kubectl("exec", "-n", "kube-system", "hostnet", "--", "sh", "-c", "echo $HOSTNAME").stdout == \
            "node-2\n"  # a hostNetwork pod's hostname is its node's
        assert kubectl("exec", "-n", "kube-system", "hostnet", "--", "wget", "-qO-",
                       f"http://{lab.pod('web-2').ip}:8080/hostname").stdout == "web-2"
    finally:
        kubectl("delete", "-n", "kube-system", "pod", "hostnet", "--wait=true", check=False)
    assert netns.exists(lab.node("node-2").netns), "deleting a hostNetwork pod removed its node's namespace"


def test_kubernetes_service_reached_from_a_pod(lab: Lab, kubectl) -> None:
    svc = kubectl("get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port}").stdout
    assert svc == "10.96.0.1 443"
    ep = kubectl("get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}:"
                 "{.subsets[0].ports[0].port}").stdout
    assert ep == f"{lab.node('node-1').ip}:6443"
    token = (lab.paths.root / "apiserver" / "token").read_text().strip()
    ca = "/tmp/" + lab.name + "-ca.crt"
    Path(ca).write_bytes((lab.paths.root / "apiserver" / "ca.crt").read_bytes())
    try:
        out = kubectl("exec", "web-2", "--", "wget", "-qO-", f"--ca-certificate={ca}", "--header",
                      f"Authorization: Bearer {token}", "https://kubernetes.default.svc/version").stdout
        assert '"gitVersion":"v1.37.0"' in out.replace(" ", "")
        r = kubectl("exec", "web-2", "--", "wget", "-qO-", f"--ca-certificate={ca}", "https://10.96.0.1/version",
                    check=False)
        assert r.returncode in (6, 8), r.stderr  # 401: the lab's token is still required (wget: auth failure)
    finally:
        os.unlink(ca)


def test_flannel_pods_follow_the_node_agents(lab: Lab, kubectl) -> None:
    deadline = time.monotonic() + 15
    while True:
        out = kubectl("get", "pods", "-n", "kube-flannel", "-o", "wide").stdout.splitlines()[1:]
        if len(out) == 2 and all(r.split()[1] == "1/1" for r in out):
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.3)
    ips = {n.name: n.ip for n in lab.nodes}
    for r in out:
        f = r.split()
        assert re.match(r"^kube-flannel-ds-[a-z0-9]{5}$", f[0]) and f[2] == "Running" and f[5] == ips[f[6]]
    ds = kubectl("get", "ds", "-n", "kube-flannel").stdout.splitlines()[1].split()
    assert ds[:6] == ["kube-flannel-ds", "2", "2", "2", "2", "2"]
    proxies = [r.split() for r in kubectl("get", "pods", "-n", "kube-system", "-o", "wide").stdout.splitlines()[1:]
               if r.startswith("kube-proxy-")]  # this lab has Services, so kube-proxy runs on every node
    assert sorted(r[6] for r in proxies) == ["node-1", "node-2"] and all(r[1] == "1/1" for r in proxies)


OLD_KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.29")


@pytest.mark.skipif(not OLD_KUBECTL.exists(), reason=f"no kubectl older than 1.30 on this machine ({OLD_KUBECTL})")
def test_spdy_kubectl_1_29_exec_tty_port_forward_and_run(lab: Lab, kubectl) -> None:
    """kubectl 1.29 speaks SPDY/3.1 only (exec, attach, port-forward): the same sessions over it."""
    old = [str(OLD_KUBECTL), *kubectl.argv[1:]]
    r = subprocess.run([*old, "exec", "-i", "web-1", "--", "sh", "-c", "cat; echo err >&2; exit 3"], input="hi\n",
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (3, "hi\n") and r.stderr.splitlines() == ["err", "command terminated with "
                                                                                 "exit code 3"]
    out, code = _drive([*old, "exec", "-it", "web-2", "--", "sh"], [b"stty size; echo $POD_NAME\r", b"exit 4\r"])
    assert code == 4 and "40 120" in out and "web-2" in out, out
    port = _free_port()
    p = subprocess.Popen([*old, "port-forward", "pod/web-1", f"{port}:8080"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{port}")
        assert _get(port, "/hostname") == "web-1"
    finally:
        p.kill()
        p.wait()
    out, code = _drive([*old, "run", "old", "--image=busybox", "--rm", "-it", "--restart=Never", "--", "sh"],
                       [b"echo me=$HOSTNAME; exit 6\r"], settle=3.0)
    assert code == 6 and "me=old" in out and 'pod "old" deleted' in out, out
