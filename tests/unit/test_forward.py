"""Which host a verb about one object goes to, and how several hosts' JSON answers merge (emulator.hosts.forward)."""
from __future__ import annotations

import argparse
import json

import pytest

from emulator.cli.host_cmds import _without_lab
from emulator.errors import UsageError
from emulator.hosts import forward


def ns(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def test_targets_of_each_verb() -> None:
    assert forward.targets("describe", ns(kind="pod", name="web")) == ("pod", ["web"])
    assert forward.targets("describe", ns(kind="node/node-2", name=None)) == ("node", ["node-2"])
    assert forward.targets("describe", ns(kind="svc", name="web")) == ("any", [])
    assert forward.targets("logs", ns(pod="kube-system/coredns-1", follow=False)) == ("pod", ["coredns-1"])
    assert forward.targets("agent", ns(node="node-3")) == ("node", ["node-3"])
    assert forward.targets("bgp", ns(node=None)) is None  # every host
    assert forward.targets("link", ns(target="web:eth0")) == ("any", ["web"])
    assert forward.targets("link", ns(targets=[])) is None


def test_logs_follow_goes_to_the_pods_host_and_describe_without_name_is_refused() -> None:
    assert forward.targets("logs", ns(pod="web", follow=True)) == ("pod", ["web"])
    with pytest.raises(UsageError, match="needs a name"):
        forward.targets("describe", ns(kind="pod", name=None))


def test_logs_query_of_podlab_logs_arguments() -> None:
    """``podlab logs -f`` across hosts asks the host for what ``kubectl logs`` would (``pods/log``'s query)."""
    assert forward.logs_query(ns(pod="web", follow=True, container=None, tail=None, namespace=None)) == (
        "default", "web", {"follow": ["true"]})
    assert forward.logs_query(ns(pod="pod/web", follow=True, container="c", tail=3, namespace=None)) == (
        "default", "web", {"follow": ["true"], "container": ["c"], "tailLines": ["3"]})
    assert forward.logs_query(ns(pod="shop/cart", follow=False, container=None, tail=0, namespace=None)) == (
        "shop", "cart", {"follow": ["false"], "tailLines": ["0"]})
    assert forward.logs_query(ns(pod="cart", follow=True, container=None, tail=None, namespace="x"))[0] == "x"


def test_merged_json_keeps_the_list_form() -> None:
    a = forward.Result(json.dumps({"kind": "List", "lab": "x", "items": [{"n": 1}]}), "", 0)
    b = forward.Result(json.dumps({"kind": "List", "lab": "x", "items": [{"n": 2}, {"n": 3}]}), "", 0)
    merged = json.loads(forward.merged_json([("h1", a), ("h2", b)]))
    assert merged == {"kind": "List", "lab": "x", "items": [{"n": 1}, {"n": 2}, {"n": 3}]}
    plain = json.loads(forward.merged_json([("h1", forward.Result("[1]", "", 0)), ("h2", forward.Result("[2]", "", 0))]))
    assert plain == [1, 2]


def test_the_lab_option_is_not_sent_to_the_host() -> None:
    assert _without_lab(["--lab", "x", "describe", "pod", "a"]) == ["describe", "pod", "a"]
    assert _without_lab(["describe", "--lab=x", "pod", "a"]) == ["describe", "pod", "a"]
