"""The pure parts of failure injection: the nft script for a cut link and reading the table back (no root)."""
from __future__ import annotations

import json

from emulator import faults

RECORDED = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "bridge", "name": "podlab_faults", "handle": 1}},
    {"chain": {"family": "bridge", "table": "podlab_faults", "name": "forward", "handle": 1, "type": "filter",
               "hook": "forward", "prio": -200, "policy": "accept"}},
    {"rule": {"family": "bridge", "table": "podlab_faults", "chain": "forward", "handle": 2,
              "comment": "podlab link node-1 node-2 since 2026-11-22T05:18:29Z",
              "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "node-1"}},
                       {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "node-2"}},
                       {"counter": {"packets": 5, "bytes": 264}}, {"drop": None}]}},
    {"rule": {"family": "bridge", "table": "podlab_faults", "chain": "forward", "handle": 3,
              "comment": "podlab link node-1 node-2 since 2026-11-22T05:18:29Z",
              "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "node-2"}},
                       {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "node-1"}},
                       {"counter": {"packets": 3, "bytes": 208}}, {"drop": None}]}},
    {"rule": {"family": "bridge", "table": "podlab_faults", "chain": "forward", "handle": 4,
              "comment": "someone else's experiment", "expr": [{"drop": None}]}},
]}


def test_script_drops_both_directions_in_podlabs_own_table() -> None:
    s = faults.link_rules_script(("node-1", "node-3"), "2026-01-01T00:00:00Z")
    lines = s.splitlines()
    assert lines[0] == "add table bridge podlab_faults"
    assert "hook forward" in lines[1] and "policy accept" in lines[1]
    assert 'iifname "node-1" oifname "node-3" counter drop' in lines[2]
    assert 'iifname "node-3" oifname "node-1" counter drop' in lines[3]
    assert all('comment "podlab link node-1 node-3 since 2026-01-01T00:00:00Z"' in ln for ln in lines[2:])


def test_rules_read_back_as_one_fault_per_pair() -> None:
    (f,) = faults.parse_link_rules(json.dumps(RECORDED))
    assert (f.kind, f.nodes, f.since, f.dropped_packets, f.handles) == (
        "link", ("node-1", "node-2"), "2026-11-22T05:18:29Z", 8, (2, 3))
    assert f.as_dict() == {"kind": "link", "nodes": ["node-1", "node-2"], "since": "2026-11-22T05:18:29Z",
                           "droppedPackets": 8}


def test_no_table_means_no_link_fault() -> None:
    assert faults.parse_link_rules("") == []
    assert faults.parse_link_rules(json.dumps({"nftables": [{"metainfo": {}}]})) == []


def test_a_link_to_another_hosts_node_is_cut_at_the_local_port_by_its_mac() -> None:
    from emulator.faults import remote_rules_script
    script = remote_rules_script(("node-1", "node-2"), "node-1", "0a:58:c0:a8:38:0c", "2026-12-02T05:00:00Z")
    rules = [ln for ln in script.splitlines() if ln.startswith("add rule")]
    assert rules == [
        'add rule bridge podlab_faults forward iifname "node-1" ether daddr 0a:58:c0:a8:38:0c counter drop '
        'comment "podlab link node-1 node-2 since 2026-12-02T05:00:00Z"',
        'add rule bridge podlab_faults forward oifname "node-1" ether saddr 0a:58:c0:a8:38:0c counter drop '
        'comment "podlab link node-1 node-2 since 2026-12-02T05:00:00Z"']
