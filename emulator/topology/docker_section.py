"""The ``containers:`` section (Docker containers on ``runtime: docker`` nodes) and its rules.

Each entry is one ``docker run``::

    containers:
      - {name: web, node: node-3, image: netexec, publish: ["8080:80", "9000:9000/udp"]}

Checked here, before anything is built, each broken rule one ``TopologyError`` (file, field, fix):

* ``node`` must be a node of the lab with ``runtime: docker`` (a Kubernetes node has no docker0);
* ``name`` is unique *per node*, as Docker's names are per daemon ("Conflict. The container name "/web" is
  already in use"); two nodes may each run a ``web``, which is exactly the lesson's first trap;
* ``publish`` follows ``docker run -p``: ``[IP:]HOST:CONTAINER[/tcp|/udp]``, ports 1-65535. What Docker itself
  rejects is refused with Docker's own words ("invalid hostPort", "invalid containerPort", "invalid proto");
  a bare ``80`` (Docker picks a random host port) and ranges are refused too, because a lab's ports are fixed.
  A number (``publish: [8080]``, or an unquoted ``8080:80`` that a YAML 1.1 tool read as base 60) is refused;
* a host port is published once per node and protocol (Docker: "Bind for 0.0.0.0:8080 failed: port is already
  allocated");
* any host port may be published, also one in the NodePort range: kube-proxy runs on the Kubernetes nodes
  only (a Docker host has none), so no rule of the lab claims it.

docker0's range 172.17.0.0/16 may not overlap the lab's pod, Service or underlay range when a Docker node exists.

Addresses: the containers of a node get 172.17.0.2, .3, ... in file order, as Docker's IPAM numbers a fresh
docker0; every Docker node does the same, so two nodes' first containers hold the same address.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from emulator.topology import names
from emulator.topology.model import DockerContainer, Node, Publish
from emulator.topology.validate import Validator, did_you_mean, show

CONTAINER_KEYS = ("name", "node", "image", "publish", "command")
IMAGES = ("netexec", "pause")
DOCKER_NET = ipaddress.IPv4Network("172.17.0.0/16")
DOCKER_GW = ipaddress.IPv4Address("172.17.0.1")
FIRST_IP = DOCKER_GW + 1
_PORT = re.compile(r"^[0-9]+$")


def parse(v: Validator, raw: object, nodes: tuple[Node, ...], extra: dict[str, Any],
          ranges: tuple[tuple[str, ipaddress.IPv4Network], ...] = ()) -> tuple[DockerContainer, ...]:
    """The containers; ``ranges`` are the lab's (field, network) ranges docker0's 172.17.0.0/16 must not touch."""
    docker = [n.name for n in nodes if n.runtime == "docker"]
    if docker:
        for field, net in ranges:
            if net.overlaps(DOCKER_NET):
                v.fail(field, f"{net} overlaps 172.17.0.0/16, the docker0 range of the Docker nodes "
                       f"({', '.join(docker)}): an address in both could not be routed unambiguously",
                       "choose a range outside 172.17.0.0/16 (e.g. the defaults 10.244.0.0/16, 10.96.0.0/12, "
                       "192.168.56.0/24)")
    entries = v.list_of(raw, "containers", "containers", "[{name: web, node: node-3, publish: ['8080:80']}]")
    seen: dict[tuple[str, str], int] = {}
    ports: dict[tuple[str, int, str], str] = {}
    next_ip: dict[str, ipaddress.IPv4Address] = {}
    out: list[DockerContainer] = []
    for i, entry in enumerate(entries):
        at = f"containers[{i}]"
        data = v.mapping(entry, at, CONTAINER_KEYS, "a container")
        name = v.dns_name(data.get("name"), f"{at}.name", "container", names.MAX_OBJECT_NAME, example="web")
        node = data.get("node")
        if node not in docker:
            known = [n.name for n in nodes]
            why = (f"node {show(node)} runs Kubernetes (runtime: kubelet), it has no docker0" if node in known
                   else f"unknown node {show(node)}")
            hint = did_you_mean(node, docker) if docker else None
            v.fail(f"{at}.node", f"{why}; Docker nodes: {', '.join(docker) or 'none'}",
                   (hint + " " if hint else "") + ("use one of the Docker nodes" if docker else
                                                   "add 'runtime: docker' to the node that runs the container"))
        if (node, name) in seen:
            v.fail(f"{at}.name", f"container name '{name}' is already in use on {node} by containers["
                   f"{seen[(node, name)]}] (Docker: Conflict. The container name \"/{name}\" is already in use)",
                   f"give each container of a node its own name, e.g. {name}-2")
        seen[(node, name)] = i
        image = data.get("image", "netexec")
        if image not in IMAGES:
            v.fail(f"{at}.image", f"image {show(image)} is not one podlab runs in a Docker container",
                   f"use one of {', '.join(IMAGES)} (netexec answers /hostname and /clientip)")
        publish: list[Publish] = []
        for k, item in enumerate(v.list_of(data.get("publish"), f"{at}.publish", "publish", '["8080:80"]')):
            p = parse_publish(v, item, f"{at}.publish[{k}]")
            key = (node, p.host_port, p.protocol)
            if key in ports:
                v.fail(f"{at}.publish[{k}]", f"host port {p.host_port}/{p.protocol} of {node} is already published "
                       f"by {ports[key]} (Docker: Bind for 0.0.0.0:{p.host_port} failed: port is already allocated)",
                       "publish another host port, e.g. " + f"'{p.host_port + 1}:{p.container_port}'")
            ports[key] = at
            publish.append(p)
        ip = next_ip.get(node, FIRST_IP)
        next_ip[node] = ip + 1
        out.append(DockerContainer(name=name, node=node, ip=ip, image=image, publish=tuple(publish),
                                   command=v.argv(data.get("command"), f"{at}.command")))
    return tuple(out)


def parse_publish(v: Validator, raw: object, field: str) -> Publish:
    """``[IP:]HOST:CONTAINER[/PROTO]`` as ``docker run -p`` reads it."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        v.fail(field, f"publish entry {raw} is a number: -p takes HOST:CONTAINER (YAML 1.1 tools even read an "
               "unquoted 8080:80 as the base-60 number 484880)", "quote it and give both ports: publish: [\"8080:80\"]")
    if not isinstance(raw, str) or not raw:
        v.fail(field, f"publish entry {show(raw)} is not a string", "write e.g. \"8080:80\" or \"5353:53/udp\"")
    spec, _, proto = raw.partition("/")
    proto = proto if "/" in raw else "tcp"
    if proto not in ("tcp", "udp"):
        v.fail(field, f"invalid proto: {proto} (in {show(raw)}; docker run -p takes tcp, udp or sctp)",
               f"write {spec}/tcp or {spec}/udp")
    parts = spec.split(":")
    if len(parts) == 1:
        v.fail(field, f"{show(raw)} names only the container port: Docker would publish it on a random host port",
               f"give the host port too, e.g. \"{spec}:{spec}\"")
    if len(parts) > 3:
        v.fail(field, f"invalid publish {show(raw)}: too many ':' (IPv6 host addresses are not supported here)",
               "write [IP:]HOST:CONTAINER, e.g. \"8080:80\"")
    host_ip = parts[0] if len(parts) == 3 else None
    if host_ip is not None:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            v.fail(field, f"invalid IP address: {host_ip} (in {show(raw)})",
                   "give one of the node's addresses, or drop it to publish on all of them")
    host, cport = parts[-2], parts[-1]
    for what, text in (("hostPort", host), ("containerPort", cport)):
        if "-" in text:
            v.fail(field, f"{show(raw)} publishes a port range; a lab publishes single ports",
                   "publish each port on its own, e.g. \"8080:80\"")
        if not _PORT.match(text) or not 1 <= int(text) <= 65535:
            v.fail(field, f"invalid {what}: {text or '(empty)'} (in {show(raw)}); a port is 1-65535",
                   "write e.g. \"8080:80\"")
    return Publish(host_port=int(host), container_port=int(cport), protocol=proto, host_ip=host_ip)
