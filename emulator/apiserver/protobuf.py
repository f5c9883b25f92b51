"""Request bodies in Kubernetes' protobuf encoding, decoded to the JSON objects the rest of the server handles.

kubectl's typed generators (``kubectl create namespace|deployment|service ...``) send their object as
``application/vnd.kubernetes.protobuf``: the bytes ``k8s\\x00``, then a ``runtime.Unknown`` envelope (field 1
TypeMeta{apiVersion=1, kind=2}, field 2 the object's own protobuf). The protobuf wire format is decoded here by
hand (varints, length-delimited fields), guided by a table of the message fields those generators use, with the
field numbers of the Kubernetes API's published ``generated.proto`` files (facts of the wire format). Go writes
every non-pointer field, so an empty one outside the table is skipped; a field with a value outside the table,
or a kind without one, is a 415 Status asking for JSON (``kubectl apply -f``), never a field silently dropped. Responses are always JSON, which these clients also accept.
"""
from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"
# field kinds: "s" string, "i" integer (0: unset), "i0" integer kept when 0 (a Go pointer), "b" bool (false: unset), "m:<Msg>" message, "ls" repeated string, "lm:<Msg>" repeated
# message, "map" map<string,string>, "ios" IntOrString, "skip" a read-only field of no use here
META = {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"), 5: ("uid", "s"),
        6: ("resourceVersion", "s"), 7: ("generation", "i"), 8: ("creationTimestamp", "skip"),
        11: ("labels", "map"), 12: ("annotations", "map"), 14: ("finalizers", "ls")}
MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": META,
    "TypeMeta": {1: ("apiVersion", "s"), 2: ("kind", "s")},
    "Namespace": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:NamespaceSpec"), 3: ("status", "skip")},
    "NamespaceSpec": {1: ("finalizers", "ls")},
    "Service": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:ServiceSpec"), 3: ("status", "skip")},
    "ServiceSpec": {1: ("ports", "lm:ServicePort"), 2: ("selector", "map"), 3: ("clusterIP", "s"),
                    4: ("type", "s"), 5: ("externalIPs", "ls"), 7: ("sessionAffinity", "s"),
                    10: ("externalName", "s"), 11: ("externalTrafficPolicy", "s"), 17: ("ipFamilyPolicy", "s"),
                    18: ("clusterIPs", "ls"), 19: ("ipFamilies", "ls"), 22: ("internalTrafficPolicy", "s")},
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"), 4: ("targetPort", "ios"),
                    5: ("nodePort", "i"), 6: ("appProtocol", "s")},
    "Deployment": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:DeploymentSpec"), 3: ("status", "skip")},
    "DeploymentSpec": {1: ("replicas", "i0"), 2: ("selector", "m:LabelSelector"), 3: ("template", "m:PodTemplateSpec"),
                       4: ("strategy", "m:DeploymentStrategy"), 5: ("minReadySeconds", "i"),
                       6: ("revisionHistoryLimit", "i0"), 7: ("paused", "b"), 9: ("progressDeadlineSeconds", "i0")},
    "DeploymentStrategy": {1: ("type", "s")},
    "LabelSelector": {1: ("matchLabels", "map"), 2: ("matchExpressions", "lm:LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "ls")},
    "Pod": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:PodSpec"), 3: ("status", "skip")},
    "PodTemplateSpec": {1: ("metadata", "m:ObjectMeta"), 2: ("spec", "m:PodSpec")},
    "PodSpec": {2: ("containers", "lm:Container"), 3: ("restartPolicy", "s"), 4: ("terminationGracePeriodSeconds", "i0"),
                6: ("dnsPolicy", "s"), 7: ("nodeSelector", "map"), 8: ("serviceAccountName", "s"),
                10: ("nodeName", "s"), 19: ("schedulerName", "s")},
    "Container": {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "ls"), 4: ("args", "ls"), 6: ("ports", "lm:ContainerPort"),
                  7: ("env", "lm:EnvVar"), 8: ("resources", "m:ResourceRequirements"), 13: ("terminationMessagePath", "s"),
                  14: ("imagePullPolicy", "s"), 16: ("stdin", "b"), 17: ("stdinOnce", "b"), 18: ("tty", "b"),
                  20: ("terminationMessagePolicy", "s")},
    "ContainerPort": {1: ("name", "s"), 3: ("containerPort", "i"), 4: ("protocol", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {},
}
KINDS = {("v1", "Namespace"), ("v1", "Service"), ("v1", "Pod"), ("apps/v1", "Deployment")}


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated field")
            value, i = buf[i:i + n], i + n
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield num, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_message(buf: bytes, msg: str) -> dict[str, Any]:
    table = MESSAGES[msg]
    out: dict[str, Any] = {}
    for num, wire, value in _fields(buf):
        if num not in table:
            if value in (b"", 0):  # Go's marshaller writes every non-pointer field, empty or not
                continue
            raise ProtobufError(f"field {num} of {msg} is not one podlab decodes")
        name, kind = table[num]
        if kind == "skip":
            continue
        if kind == "s":
            if value:  # an empty string is an unset field
                out[name] = value.decode()
        elif kind in ("i", "i0"):
            if value or kind == "i0":
                out[name] = _signed(value)
        elif kind == "b":
            if value:
                out[name] = True
        elif kind == "ls":
            out.setdefault(name, []).append(value.decode())
        elif kind == "map":
            entry = {n: v.decode() for n, _, v in _fields(value)}
            out.setdefault(name, {})[entry.get(1, "")] = entry.get(2, "")
        elif kind == "ios":
            f = {n: v for n, _, v in _fields(value)}
            out[name] = f.get(3, b"").decode() if f.get(1) == 1 else _signed(f.get(2, 0))
        elif kind.startswith("m:"):
            out[name] = decode_message(value, kind[2:])
        elif kind.startswith("lm:"):
            out.setdefault(name, []).append(decode_message(value, kind[3:]))
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body → the object as JSON would carry it (ProtobufError if podlab cannot)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic")
    env = {n: v for n, _, v in _fields(body[len(MAGIC):])}
    tm = decode_message(env.get(1, b""), "TypeMeta")
    api, kind = tm.get("apiVersion", ""), tm.get("kind", "")
    if (api, kind) not in KINDS:
        raise ProtobufError(f"{kind} ({api}) in protobuf")
    return {"apiVersion": api, "kind": kind, **decode_message(env.get(2, b""), kind)}
