# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster report's renderer: escaping, the slot map's runs, open and unserved slots, the history."""

from __future__ import annotations

import json
import re

from ansible_collections.redisops.cluster.plugins.module_utils._report import (
    GRID, Node, crowded_hosts, history_point, parse_history, render_report, slot_owners, slot_runs,
)

MASTER_A, MASTER_B, REPLICA = "a" * 40, "b" * 40, "c" * 40


def node(node_id: str, port: int, role: str = "master", slots=(), **fields) -> dict:
    raw = {"id": node_id, "host": "127.0.0.1", "port": port, "role": role, "master_id": None, "flags": [role],
           "reachable": True, "slots": [list(pair) for pair in slots], "migrating": [], "importing": [], "keys": 10,
           "used_memory": 2 * 1048576, "labels": {"zone": "z1", "hostname": "h1"}}
    raw.update(fields)
    return raw


def facts(*nodes, findings=()) -> dict:
    return {"state": "ok", "slots_covered": 16384, "masters": 2, "replicas": 1, "reachable_nodes": len(nodes),
            "imbalance_pct": 0.0, "nodes": list(nodes), "findings": list(findings)}


def two_masters(**replica_fields) -> dict:
    return facts(node(MASTER_A, 7000, slots=[(0, 8191)]), node(MASTER_B, 7001, slots=[(8192, 16383)]),
                 node(REPLICA, 7002, role="replica", master_id=MASTER_A, flags=["slave"], **replica_fields))


def master(first: int, last: int, address: str = "127.0.0.1:7000") -> Node:
    return Node(id=address, address=address, role="master", master_id=None, zone="-", rack="-", host="h",
                down=False, slots=((first, last),), keys=0, used_memory=0)


def test_every_text_from_redis_and_the_inventory_is_escaped():
    hostile = "<script>alert('x')</script>"
    page = render_report(
        two_masters(labels={"zone": hostile, "rack": "r&d", "hostname": '"quoted"'}),
        history=[{"collected_at": hostile, "nodes": []}, {"collected_at": "later", "nodes": []}],
        cluster="<b>orders</b>", history_source=hostile)
    assert "<script" not in page and "<b>orders</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "zone &lt;script&gt;" in page and "rack r&amp;d" in page and "&quot;quoted&quot;" in page
    assert "Redis Cluster &lt;b&gt;orders&lt;/b&gt;" in page


def test_finding_messages_are_escaped_and_styled_by_severity():
    finding = {"kind": "open_slot", "severity": "critical", "message": "slot 7 <open> & stuck", "nodes": [MASTER_A],
               "slots": [[7, 7]]}
    page = render_report(facts(node(MASTER_A, 7000, slots=[(0, 16383)]), findings=[finding]))
    assert ('<li class="finding critical"><span class="sev">critical</span> <b>open_slot</b>: '
            "slot 7 &lt;open&gt; &amp; stuck (slots 7)</li>") in page


def test_the_page_loads_nothing():
    page = render_report(two_masters(), history=[{"collected_at": "t1", "nodes": []}, {"collected_at": "t2"}])
    assert not re.search(r"(https?:)?//[a-z0-9]", page, re.IGNORECASE), "the page names a URL"
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page.replace(
        'url(#uncovered)', "")


def test_slot_runs_cover_every_slot_once_and_stop_at_each_row_of_the_grid():
    owners = slot_owners([master(0, 129), master(300, 16383, "127.0.0.1:7001")])
    runs = slot_runs(owners)
    assert runs[:4] == [(0, 127, 0), (128, 129, 0), (130, 255, None), (256, 299, None)]
    assert runs[4] == (300, 383, 1)
    assert sum(last - first + 1 for first, last, _owner in runs) == 16384
    assert all(first // GRID == last // GRID for first, last, _owner in runs)
    assert all(owners[slot] == owner for first, last, owner in runs for slot in range(first, last + 1))


def test_open_and_unserved_slots_are_marked_and_listed():
    page = render_report(facts(
        node(MASTER_A, 7000, slots=[(0, 8190)], migrating=[[42, MASTER_B]]),
        node(MASTER_B, 7001, slots=[(8192, 16383)], importing=[[42, MASTER_A]])))
    assert "slot 42: migrating from 127.0.0.1:7000 to 127.0.0.1:7001; importing into 127.0.0.1:7001 from " \
           "127.0.0.1:7000" in page
    assert "<title>slot 42 is open</title>" in page and "open: 1 slots" in page
    assert "<title>slots 8191: not served</title>" in page and "not served: 1 slots" in page


def test_anti_affinity_and_crowded_hosts_are_highlighted():
    finding = {"kind": "anti_affinity", "severity": "warning", "message": "shares zone z1", "nodes": [REPLICA, MASTER_A]}
    data = two_masters(labels={"zone": "z1", "hostname": "h2"})
    data["findings"] = [finding]
    page = render_report(data)
    assert page.count('class="node master problem"') == 1 and page.count('class="node replica problem"') == 1
    assert '<div class="host crowded"><h3>h1</h3>' in page and "2 masters on this host" in page
    assert '<div class="host"><h3>h2</h3>' in page


def test_crowded_hosts_counts_masters_beyond_an_even_spread():
    def on(host: str, role: str = "master") -> Node:
        return Node(id=host + role, address=host, role=role, master_id=None, zone="-", rack="-", host=host,
                    down=False, slots=((0, 1),) if role == "master" else (), keys=0, used_memory=0)
    assert crowded_hosts([on("h1"), on("h1"), on("h2", "replica"), on("h3")]) == {"h1": 2}
    assert crowded_hosts([on("h1"), on("h2"), on("h3")]) == {}


def test_an_empty_history_says_where_it_was_looked_for():
    assert parse_history("") == []
    page = render_report(two_masters(), history=parse_history(""), history_source="/var/h/orders.jsonl")
    assert "No reconcile history at /var/h/orders.jsonl" in page and "<polyline" not in page


def test_history_lines_that_are_not_records_are_skipped_and_the_last_ones_kept():
    lines = [json.dumps({"collected_at": "t%d" % index}) for index in range(5)]
    text = "\n".join(lines[:2] + ["not json", "[1, 2]", ""] + lines[2:])
    assert [record["collected_at"] for record in parse_history(text)] == ["t0", "t1", "t2", "t3", "t4"]
    assert [record["collected_at"] for record in parse_history(text, limit=2)] == ["t3", "t4"]


def test_a_history_record_counts_slots_keys_and_problems():
    record = {"collected_at": "2026-11-30T09:00:00Z", "refused": ["host-b: facts 900 s old"],
              "decisions": ["fix: slot 7 open"], "nodes": [
                  {"node": "127.0.0.1:7000", "role": "master", "slots": "0-8191,9000", "keys": 5, "error": None},
                  {"node": "127.0.0.1:7001", "role": "master", "slots": "8192-8999", "keys": 7},
                  {"node": "127.0.0.1:7002", "role": "replica", "slots": "", "keys": 5, "error": "refused"},
                  {"node": "127.0.0.1:7003", "error": "connection refused"}]}
    assert history_point(record) == {"at": "2026-11-30T09:00:00Z", "slots": 9001, "keys": 12, "problems": 4}
    assert history_point({}) == {"at": "-", "slots": 0, "keys": 0, "problems": 0}


def test_the_history_is_drawn_as_three_line_charts():
    records = [{"collected_at": "t%d" % index, "nodes": [{"role": "master", "slots": "0-16383", "keys": index}]}
               for index in range(3)]
    page = render_report(two_masters(), history=records, history_source="h.jsonl")
    assert page.count("<polyline") == 3 and "3 reconcile records from h.jsonl" in page


def test_a_history_of_one_record_is_drawn_as_a_flat_line():
    page = render_report(two_masters(), history=[{"collected_at": "t0", "nodes": [
        {"role": "master", "slots": "0-16383", "keys": 4}]}], history_source="h.jsonl")
    assert page.count('points="28.0,28.0 392.0,28.0"') == 2  # slots and keys at their top; no problems: at 0
    assert page.count('points="28.0,112.0 392.0,112.0"') == 1
