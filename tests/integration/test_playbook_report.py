# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report playbook on a live 9-node cluster over three zones, its page opened in headless Chromium: healthy, then
with an open slot and a dead replica. The tests run in file order on one cluster; the last one breaks it.

REPORT_SCREENSHOTS=<dir> keeps the screenshots there (docs/report.png is one of them)."""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess

import pytest
from cluster_checks import cluster_nodes_fields, own_ranges, replication_settled, write_keys
from playbook_runs import local_inventory, run_collection_playbook
from redis_harness import RedisNodes, form_cluster

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ZONES = ("a", "b", "c")
KEYS = 600


@pytest.fixture(scope="module")
def cluster():
    with RedisNodes(9) as nodes:
        form_cluster(nodes.nodes, replicas=2)
        write_keys(nodes, KEYS)
        yield nodes


@pytest.fixture(scope="module")
def inventory(cluster):
    """The inventory of the healthy cluster, kept when a test kills one of its nodes."""
    return zoned_inventory(cluster)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("report")


def shards(nodes) -> list:
    """[master, replica, replica] per shard, as the first node sees the cluster."""
    by_id = {node.node_id(): node for node in nodes}
    fields = cluster_nodes_fields(nodes[0])
    return [[by_id[master[0]]] + [by_id[line[0]] for line in fields if line[3] == master[0]]
            for master in fields if "master" in master[2]]


def zoned_inventory(nodes) -> dict:
    """One inventory host per zone; each shard's master and two replicas in three different zones, each zone holding
    one master: no placement problem."""
    hosts = {"host-" + zone: {"redis_cluster_address": "127.0.0.1", "redis_cluster_zone": zone,
                              "redis_cluster_rack": "rack-" + zone, "redis_node_ports": []} for zone in ZONES}
    for index, shard in enumerate(shards(nodes)):
        for offset, node in enumerate(shard):
            hosts["host-" + ZONES[(index + offset) % len(ZONES)]]["redis_node_ports"].append(node.port)
    return local_inventory({"redis_cluster": hosts})


def history(nodes, path: str) -> None:
    """Three records in the reconcile playbook's history format, the last one with an instance down and a decision."""
    nodes_now = []
    for fields in cluster_nodes_fields(nodes[0]):
        ranges = own_ranges(fields)
        nodes_now.append({"node": fields[1].split("@")[0], "host": "host-a", "zone": "a", "error": None,
                          "id": fields[0], "role": "master" if "master" in fields[2] else "replica",
                          "slots": ",".join("%d-%d" % pair for pair in ranges), "keys": KEYS // 3, "view": {},
                          "failing": []})
    records = [{"collected_at": "2026-11-30T08:%02d:00Z" % minute, "hosts": {}, "nodes": nodes_now,
                "cluster": "redis_cluster", "refused": [], "decisions": []} for minute in (0, 5, 10)]
    records[-1]["nodes"] = nodes_now[1:] + [dict(nodes_now[0], error="connection refused", keys=None)]
    records[-1]["decisions"] = ["fix: slot 0 open"]
    with open(path, "w") as handle:
        handle.write("".join(json.dumps(record) + "\n" for record in records))


def report(inventory, workdir, name: str, check: bool = False, **extra) -> tuple:
    """Run the report playbook into workdir/<name>.html; (run, path)."""
    path = os.path.join(str(workdir), name + ".html")
    extra_vars = dict({"redis_cluster_report_file": path,
                       "redis_cluster_report_history": os.path.join(str(workdir), "history.jsonl")}, **extra)
    run = run_collection_playbook("report", inventory, extra_vars=extra_vars, check=check)
    assert run.rc == 0, run.output
    return run, path


def chromium(*args) -> str:
    assert CHROMIUM, "chromium is missing: run make chromium (apt-get install chromium)"
    proc = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1440,2000"]
                          + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def screenshot(path: str, name: str, workdir) -> str:
    png = os.path.join(os.environ.get("REPORT_SCREENSHOTS") or str(workdir), name + ".png")
    chromium("--screenshot=" + png, "file://" + path)
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 20000, "a blank page"
    return png


class Dom(html.parser.HTMLParser):
    """The text of each element with a class, from Chromium's --dump-dom: {class: [text, ...]}; block elements'
    texts are set apart by a space, as a reader sees them."""

    INLINE = ("b", "span", "title")

    def __init__(self, text: str):
        super().__init__()
        self.open = []
        self.texts = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br", "rect", "path", "line", "polyline"):
            self.open.append([dict(attrs).get("class") or "", ""])

    def handle_endtag(self, tag):
        if tag not in ("meta", "br", "rect", "path", "line", "polyline") and self.open:
            css, text = self.open.pop()
            if self.open:
                self.open[-1][1] += text if tag in self.INLINE else " %s " % text
            if css:
                self.texts.setdefault(css, []).append(" ".join(text.split()))

    def handle_data(self, data):
        if self.open:
            self.open[-1][1] += data


def page(path: str) -> Dom:
    with open(path) as handle:
        source = handle.read()
    assert not re.search(r"https?:", source, re.IGNORECASE), "the page refers to a URL"
    return Dom(chromium("--dump-dom", "file://" + path))


def cluster_view(nodes) -> tuple:
    """Every live node's CLUSTER NODES without the fields that change by themselves, and its key count, once
    replication has settled."""
    replication_settled(nodes)
    return tuple((node.port, sorted(" ".join(fields[:4] + fields[6:7] + fields[8:])
                                    for fields in cluster_nodes_fields(node)), node.call("DBSIZE"))
                 for node in nodes if node.process.poll() is None)


def test_check_mode_writes_no_report_and_changes_nothing(cluster, inventory, workdir):
    before = cluster_view(cluster)
    run, path = report(inventory, workdir, "check", check=True)
    assert "check mode: the report would be written to " + path in run.output
    assert not os.path.exists(path)
    assert cluster_view(cluster) == before
    run, path = report(inventory, workdir, "check", check=True, redis_cluster_report_in_check_mode=True)
    assert os.path.exists(path) and "report written to " + path in run.output
    assert cluster_view(cluster) == before


def test_a_healthy_cluster_shows_every_node_in_its_zone_and_the_history(cluster, inventory, workdir):
    history(cluster, os.path.join(str(workdir), "history.jsonl"))
    run, path = report(inventory, workdir, "healthy")
    assert all(recap["changed"] == 0 and recap["failed"] == 0 for recap in run.recap.values()), run.output
    dom = page(path)
    screenshot(path, "healthy", workdir)
    masters = [shard[0].address for shard in shards(cluster)]
    assert sorted(line.split()[0] for line in dom.texts["node master"]) == sorted(masters)
    assert len(dom.texts["node replica"]) == 6
    assert dom.texts["zone"][0].startswith("zone a rack rack-a host-a") and len(dom.texts["zone"]) == 3
    assert "node master problem" not in dom.texts and "host crowded" not in dom.texts
    assert dom.texts["findings"] == ["no findings"]
    assert dom.texts["state-ok"] == ["ok"]
    legend = " ".join(dom.texts["legend"])
    assert all(address in legend for address in masters) and "not served: 0 slots" in legend
    assert sum(int(text.split()[1]) for text in dom.texts["legend"][0].split("127.0.0.1:")[1:]) == 16384
    assert dom.texts["findings open-slots"] == ["none"]
    assert "3 reconcile records from" in " ".join(dom.texts["sub"])
    assert len(dom.texts["chart"]) == 3
    run, _path = report(inventory, workdir, "healthy")
    assert all(recap["changed"] == 0 for recap in run.recap.values()), run.output


def test_an_open_slot_and_a_dead_replica_are_shown(cluster, inventory, workdir):
    shard, other = shards(cluster)[:2]
    source, target, dead = shard[0], other[0], shard[1]
    slot = own_ranges([line for line in cluster_nodes_fields(source) if "myself" in line[2]][0])[0][0]
    target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id())
    source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id())
    dead.kill()
    _run, path = report(inventory, workdir, "broken")
    dom = page(path)
    screenshot(path, "broken", workdir)
    open_slot = "slot %d: migrating from %s to %s; importing into %s from %s" % (
        slot, source.address, target.address, target.address, source.address)
    assert dom.texts["finding warning open-slot"] == [open_slot]
    findings = dom.texts["finding warning"]
    assert "warning open_slot: slot(s) %d are open from %s" % (slot, source.address) in " ".join(findings), findings
    assert any(text.startswith("warning node_unreachable: %s" % dead.address) for text in findings), findings
    assert dom.texts["node replica down"] == [
        "%s replica of %s (down)" % (dead.address, source.address)]
    assert "open: 1 slots" in " ".join(dom.texts["legend"])
    assert all(address in " ".join(dom.texts["node master"]) for address in (source.address, target.address))
