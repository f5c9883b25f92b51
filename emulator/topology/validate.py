"""Shape checks shared by the topology loader and, later, the manifests given to ``apply``.

``Validator`` knows a file name and an error class (``TopologyError``, or ``ManifestError`` for manifests) and
turns every broken rule into that error with the field path, the quoted value and the fix. The generic checks
(a mapping with allowed keys and a "did you mean", lists, strings, DNS names, choices, CIDRs and addresses) sit
next to the pod-spec parts (labels, containers, command/args, env, ports). Those follow the Kubernetes rules
that matter for the network: a port is declared once per pod because all containers of a pod share one network
namespace, protocols are TCP, UDP or SCTP in upper case, port and label names follow the API server's syntax.
"""
from __future__ import annotations

import difflib
import re
from ipaddress import IPv4Address, IPv4Network
from typing import Any, NoReturn

from emulator.errors import TopologyError
from emulator.topology import cidr, names
from emulator.topology.model import Container, LinkShape, Port

CONTAINER_KEYS = ("name", "image", "command", "args", "env", "ports")
PORT_KEYS = ("containerPort", "protocol", "name", "hostPort")
ENV_KEYS = ("name", "value")
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_CONTAINER = Container(name="main", image="pause")
_LABEL_PART = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_PORT_NAME = re.compile(r"^(?!.*--)(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME


def show(value: object) -> str:
    """A value as quoted in messages: strings in single quotes (control characters escaped, so a message stays one
    line), the rest as Python shows it, at most 80 chars."""
    text = f"'{one_line(value)}'" if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped as Python writes them (``\\n``)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def did_you_mean(word: object, choices: tuple[str, ...] | list[str]) -> str | None:
    """'did you mean 'x'?' for the closest choice (ignoring case), or None."""
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[match[0]]}'?" if match else None


def is_int(value: object) -> bool:
    """True for YAML integers (YAML booleans are Python ints too: they are not accepted)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _yaml_text(value: object) -> str:
    """How a scalar was most likely written in the YAML file (true, not True)."""
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def sub(field: str, key: object) -> str:
    """Field path of ``key`` under ``field`` (top level: just the key)."""
    return f"{field}.{key}" if field else str(key)


class Validator:
    """Checks values of one file; every failure raises ``error(file, field, message, fix)``."""

    def __init__(self, file: str, error: type[TopologyError] = TopologyError) -> None:
        self.file, self.error = file, error

    def fail(self, field: str, message: str, fix: str) -> NoReturn:
        raise self.error(self.file, field, message, fix)

    # -- generic shape checks -------------------------------------------------------------------------------
    def mapping(self, value: object, field: str, allowed: tuple[str, ...], what: str) -> dict[Any, Any]:
        """``value`` as a dict (None counts as empty) whose keys are all in ``allowed``."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field or "<file>", f"{what} must be a mapping (key: value), got {show(value)}",
                      f"write {what} as a mapping with the keys {', '.join(allowed)}")
        for key in value:
            if key not in allowed:
                self.fail(sub(field, key), f"unknown key {show(key)} in {what}; allowed keys: {', '.join(allowed)}",
                          did_you_mean(key, allowed) or "remove it or rename it to one of the allowed keys")
        return value

    def list_of(self, value: object, field: str, what: str, example: str) -> list[Any]:
        """``value`` as a list (None counts as empty)."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, f"{what} must be a list, got {show(value)}", f"write it as a YAML list, e.g. {example}")
        return value

    def string(self, value: object, field: str, what: str, example: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(field, f"{what} must be a non-empty string, got {show(value)}",
                      f"write e.g. {example} (quote values YAML would read as numbers or booleans)")
        return value

    def dns_name(self, value: object, field: str, kind: str, max_len: int, *, why: str = "",
                 example: str = "web-1", reserved: bool = False) -> str:
        """A DNS-1123 label of at most ``max_len`` chars; with ``reserved``, none of ``names.RESERVED``."""
        problem = names.check_name(value, kind=kind, max_len=max_len)
        if problem:
            self.fail(field, f"{kind} name {show(value)} {problem}{why}",
                      f"use a DNS label (a-z, 0-9, '-') of at most {max_len} characters, e.g. {example}")
        if reserved and value in names.RESERVED:
            self.fail(field, f"{kind} name {show(value)} is reserved: the lab has its own '<lab>-{value}' "
                      f"namespace (reserved: {', '.join(names.RESERVED)})", f"rename it, e.g. {example}")
        return str(value)

    def choice(self, value: object, field: str, choices: tuple[str, ...], what: str) -> str:
        if value not in choices:
            self.fail(field, f"{show(value)} is not a valid {what}; choose one of {', '.join(choices)}",
                      did_you_mean(value, choices) or f"use one of {', '.join(choices)}")
        return str(value)

    def network(self, value: object, field: str) -> IPv4Network:
        try:
            return cidr.parse_network(value)
        except cidr.CidrError as exc:
            self.fail(field, str(exc), exc.fix)

    def address(self, value: object, field: str) -> IPv4Address:
        try:
            return cidr.parse_address(value)
        except cidr.CidrError as exc:
            self.fail(field, str(exc), exc.fix)

    def link_shape(self, raw: object, field: str) -> LinkShape | None:
        """``link: {rate, delay, jitter, loss}`` of a node or pod (units as tc writes them), or None."""
        if raw is None:
            return None
        from emulator.topology import units
        data = self.mapping(raw, field, units.SHAPE_KEYS, "a link shape")
        try:
            return units.parse_shape(data)
        except units.UnitError as e:
            key = getattr(e, "key", "")
            self.fail(sub(field, key) if key else field, str(e), e.fix)

    # -- pod spec -------------------------------------------------------------------------------------------
    def labels(self, raw: object, field: str) -> tuple[tuple[str, str], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.fail(field, f"labels must be a mapping, got {show(raw)}", "write e.g. 'labels: {app: web}'")
        for key, value in raw.items():
            prefix, _, name = str(key).rpartition("/")
            if (not isinstance(key, str) or not name or len(name) > 63 or not _LABEL_PART.match(name)
                    or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))):
                self.fail(sub(field, key), f"label key {show(key)} is not a valid Kubernetes label key",
                          "use at most 63 letters, digits, '-', '_' or '.', optionally after a DNS name and '/'")
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_PART.match(value):
                self.fail(sub(field, key), f"label value {show(value)} is not a valid Kubernetes label value",
                          "use a string of at most 63 letters, digits, '-', '_' or '.' (quote numbers: \"1\")")
        return tuple(raw.items())

    def containers(self, raw: object, field: str) -> tuple[Container, ...]:
        """The containers of one pod; missing means one ``pause`` container named ``main``."""
        if raw is None:
            return (DEFAULT_CONTAINER,)
        entries = self.list_of(raw, field, "containers", "[{name: app, image: netexec}]")
        if not entries:
            self.fail(field, "a pod needs at least one container (value: [])",
                      "list a container, or drop 'containers' for the default pause container")
        result: list[Container] = []
        ports_seen: dict[object, str] = {}
        for j, entry in enumerate(entries):
            at = f"{field}[{j}]"
            data = self.mapping(entry, at, CONTAINER_KEYS, "a container")
            name = self.dns_name(data.get("name"), f"{at}.name", "container", names.MAX_OBJECT_NAME, example="app")
            if any(c.name == name for c in result):
                self.fail(f"{at}.name", f"container name '{name}' appears twice in the pod",
                          "give each container of a pod its own name")
            image = self.string(data.get("image", "pause"), f"{at}.image", "image", "'image: netexec'")
            if any(ch.isspace() for ch in image):
                self.fail(f"{at}.image", f"image {show(image)} contains white space",
                          "give only the image name here and put the program in 'command' and 'args'")
            command = data.get("command")
            if isinstance(command, str):
                command = ["/bin/sh", "-c", command]
            ports = self.list_of(data.get("ports"), f"{at}.ports", "ports", "[{containerPort: 8080}]")
            result.append(Container(
                name=name, image=image, command=self.argv(command, f"{at}.command"),
                args=self.argv(data.get("args"), f"{at}.args"), env=self.env(data.get("env"), f"{at}.env"),
                ports=tuple(self.port(p, f"{at}.ports[{k}]", ports_seen) for k, p in enumerate(ports))))
        return tuple(result)

    def argv(self, raw: object, field: str) -> tuple[str, ...]:
        items = self.list_of(raw, field, field.rpartition(".")[2], '["--port", "8080"]')
        for k, item in enumerate(items):
            if not isinstance(item, str) and not is_int(item):
                self.fail(f"{field}[{k}]", f"argument {show(item)} is not a string", f'quote it: "{_yaml_text(item)}"')
        return tuple(str(item) for item in items)

    def env(self, raw: object, field: str) -> tuple[tuple[str, str], ...]:
        """``{K: V}`` or ``[{name: K, value: V}]``; integer values are taken as their decimal string."""
        if isinstance(raw, dict):
            pairs = [(k, v, sub(field, k)) for k, v in raw.items()]
        else:
            pairs = []
            for k, item in enumerate(self.list_of(raw, field, "env", "{LOG_LEVEL: debug}")):
                data = self.mapping(item, f"{field}[{k}]", ENV_KEYS, "an env entry")
                pairs.append((data.get("name"), data.get("value", ""), f"{field}[{k}]"))
        result: list[tuple[str, str]] = []
        for key, value, at in pairs:
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                self.fail(at, f"environment variable name {show(key)} is invalid",
                          "use letters, digits, '_', '-' or '.', not starting with a digit")
            if any(key == k for k, _ in result):
                self.fail(at, f"environment variable {show(key)} is set twice", "set each variable once")
            if not isinstance(value, str) and not is_int(value):
                self.fail(at, f"value {show(value)} of {key} is not a string",
                          f'quote it: {key}: "{_yaml_text(value)}"')
            result.append((key, str(value)))
        return tuple(result)

    def port(self, raw: object, field: str, seen: dict[object, str]) -> Port:
        """One container port; ``seen`` collects (port, protocol) and names across the pod's containers."""
        data = self.mapping(raw, field, PORT_KEYS, "a port")
        number = data.get("containerPort")
        if not is_int(number) or not 1 <= number <= 65535:
            self.fail(f"{field}.containerPort", f"port {show(number)} is not an integer from 1 to 65535",
                      "write e.g. 'containerPort: 8080'")
        protocol = data.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            upper = str(protocol).upper()
            self.fail(f"{field}.protocol", f"protocol {show(protocol)} is not one of {', '.join(PROTOCOLS)}",
                      f"write '{upper}' (upper case)" if upper in PROTOCOLS else f"use one of {', '.join(PROTOCOLS)}")
        if (number, protocol) in seen:
            self.fail(f"{field}.containerPort", f"{protocol} port {number} is already declared by "
                      f"{seen[(number, protocol)]} (all containers of a pod share one network namespace)",
                      "declare each port once per pod")
        seen[(number, protocol)] = field
        name = data.get("name")
        if name is not None:
            if not isinstance(name, str) or len(name) > 15 or not _PORT_NAME.match(name):
                self.fail(f"{field}.name", f"port name {show(name)} is not a valid IANA service name",
                          "use at most 15 lower-case letters, digits and single '-', with a letter, e.g. http")
            if name in seen:
                self.fail(f"{field}.name", f"port name '{name}' is already used by {seen[name]}",
                          "name each port of a pod once")
            seen[name] = field
        host_port = data.get("hostPort")
        if host_port is not None and (not is_int(host_port) or not 1 <= host_port <= 65535):
            self.fail(f"{field}.hostPort", f"hostPort {show(host_port)} is not an integer from 1 to 65535",
                      "write e.g. 'hostPort: 8080', or drop it (a pod needs no host port to be reached)")
        return Port(container_port=number, protocol=protocol, name=name, host_port=host_port)
