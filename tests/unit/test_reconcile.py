# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reconcile decisions (_reconcile) from agents' facts as the agent writes them."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils._reconcile import (
    ADD, CREATE, FIX, REBALANCE, RESTORE_PLACEMENT, START, HostReport, InventoryInstance, ReconcileError, Settings, decide,
)
from ansible_collections.redisops.cluster.plugins.module_utils._shares import targets
from ansible_collections.redisops.cluster.plugins.module_utils._slots import SLOT_COUNT

NOW = "2026-11-30T09:00:00Z"
INTERVAL = 30


def node_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def ago(seconds: int) -> str:
    now = datetime.datetime.strptime(NOW, "%Y-%m-%dT%H:%M:%SZ")
    return (now - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """Inventory hosts (one per zone), their instances, and what each instance's agent reports."""

    def __init__(self, zones=("a", "b", "c")):
        self.zones = zones
        self.hosts = {"host-" + zone: {} for zone in zones}
        self.address = {"host-" + zone: "127.0.0.%d" % (index + 2) for index, zone in enumerate(zones)}
        self.collected = {host: ago(5) for host in self.hosts}

    def key(self, host: str, port: int) -> str:
        return "%s:%d" % (self.address[host], port)

    def instance(self, host: str, port: int, role="master", slots=(), master=None, known=2, view="v1",
                 open_slots=(), failing=(), error=None, node=True) -> str:
        ident = node_id(self.key(host, port))
        entry = {"collected_at": self.collected[host], "error": error, "error_at": self.collected[host] if error else None,
                 "node": None, "cluster": None}
        if node:
            count = sum(last - first + 1 for first, last in slots)
            entry["node"] = {"id": ident, "host": self.address[host], "port": port, "role": role,
                             "master_id": master, "flags": [role], "config_epoch": 1, "slots": [list(r) for r in slots],
                             "slot_count": count, "migrating": [], "importing": [], "keys": 0, "reachable": True}
            entry["cluster"] = {"state": "ok", "known_nodes": known, "size": 1, "current_epoch": 1,
                                "failing_nodes": [{"id": f, "address": "x:1", "flags": ["fail"]} for f in failing],
                                "open_slots": list(open_slots), "view_id": view}
        self.hosts[host][port] = entry
        return ident

    def reports(self, facts_missing=()) -> list:
        reports = []
        for host, instances in self.hosts.items():
            inventory = tuple(InventoryInstance(host=host, address=self.address[host], port=port, hostname=host,
                                                zone=host.split("-")[1]) for port in sorted(instances))
            facts = None if host in facts_missing else {
                "schema": 1, "collected_at": self.collected[host], "interval": INTERVAL, "host": "machine",
                "instances": {str(port): entry for port, entry in instances.items()}}
            reports.append(HostReport(name=host, instances=inventory, facts=facts))
        return reports


def healthy(masters: int = 3, replicas: int = 1) -> Cluster:
    """masters masters on port 7000 of successive hosts (equal shares), each with replicas on later hosts."""
    cluster = Cluster(zones=tuple("abcdefgh"[:max(3, masters)]))
    hosts = list(cluster.hosts)
    ids = ["m%d" % index for index in range(masters)]
    goal = targets({ident: () for ident in ids})
    first = 0
    for index, ident in enumerate(ids):
        host = hosts[index % len(hosts)]
        slots = ((first, first + goal[ident] - 1),)
        first += goal[ident]
        master = cluster.instance(host, 7000 + index // len(hosts), slots=slots, known=masters * (replicas + 1))
        for copy in range(replicas):
            replica_host = hosts[(index + 1 + copy) % len(hosts)]
            cluster.instance(replica_host, 7100 + index * 10 + copy, role="replica", master=master,
                             known=masters * (replicas + 1))
    return cluster


def run(cluster: Cluster, min_nodes: int = 3, replicas: int = 1, **kwargs) -> dict:
    return decide(cluster.reports(**kwargs), NOW, Settings(min_nodes=min_nodes, replicas=replicas)).as_dict()


def actions(plan: dict) -> list:
    return [decision["action"] for decision in plan["decisions"]]


def test_a_healthy_balanced_cluster_needs_nothing():
    plan = run(healthy())
    assert plan["refused"] == [] and plan["decisions"] == [] and plan["notes"] == []


def test_stale_and_missing_facts_are_refused_naming_the_hosts_and_ages():
    cluster = healthy()
    cluster.collected["host-b"] = ago(3 * INTERVAL + 1)
    plan = run(cluster, facts_missing=("host-c",))
    assert plan["decisions"] == []
    assert len(plan["refused"]) == 2
    assert plan["refused"][0].startswith("host-b: facts collected %s are 91 s old, more than 3 intervals of 30 s"
                                         % ago(91))
    assert plan["refused"][1].startswith("host-c: no facts (is the host reachable")


def test_facts_exactly_three_intervals_old_are_still_used():
    cluster = healthy()
    cluster.collected["host-b"] = ago(3 * INTERVAL)
    assert run(cluster)["refused"] == []


def test_a_cluster_not_yet_created_is_created_from_every_reporting_instance():
    cluster = Cluster()
    for host in cluster.hosts:
        for port in (7000, 7001):
            cluster.instance(host, port, known=1)
    plan = run(cluster, min_nodes=6)
    assert actions(plan) == [CREATE]
    assert sorted(plan["decisions"][0]["nodes"]) == sorted(cluster.key(h, p) for h in cluster.hosts for p in (7000, 7001))
    assert "min_nodes 6" in plan["decisions"][0]["reason"]
    assert {"host": "127.0.0.2", "port": 7000, "hostname": "host-a", "zone": "a"} in plan["decisions"][0]["entries"]


def test_creation_waits_for_min_nodes():
    cluster = Cluster()
    for host in cluster.hosts:
        cluster.instance(host, 7000, known=1)
    cluster.instance("host-a", 7001, error="Connection refused", node=False)
    plan = run(cluster, min_nodes=4)
    assert actions(plan) == [START]
    assert plan["notes"] == ["no cluster yet: 3 instance(s) report, 4 needed to create it (min_nodes)"]


def test_an_unreachable_instance_is_started_on_its_host():
    cluster = healthy()
    cluster.instance("host-b", 7101, role="replica", master=node_id(cluster.key("host-a", 7000)), known=6,
                     error="Error 111 connecting to 127.0.0.3:7101. Connection refused.")
    plan = run(cluster)
    assert actions(plan) == [START]
    start = plan["decisions"][0]
    assert start["host"] == "host-b" and start["nodes"] == [cluster.key("host-b", 7101)]
    assert start["node_ids"] == [node_id(cluster.key("host-b", 7101))]
    assert start["reason"] == ("host-b: its agent cannot read 127.0.0.3:7101 (Error 111 connecting to 127.0.0.3:7101. "
                               "Connection refused.); start it again (redis_node)")


def test_a_killed_master_whose_replica_took_over_is_started_and_the_masters_spread_again():
    cluster = healthy()
    master_key = cluster.key("host-a", 7000)
    dead = node_id(master_key)
    old = cluster.hosts["host-a"][7000]["node"]
    replica = next(port for port, entry in cluster.hosts["host-b"].items() if entry["node"]["master_id"] == dead)
    # The replica took over: it claims the slots; everyone flags the old master.
    cluster.instance("host-b", replica, slots=tuple(map(tuple, old["slots"])), known=6, view="v2", failing=(dead,))
    for host, instances in cluster.hosts.items():
        for port, entry in instances.items():
            if (host, port) != ("host-a", 7000) and entry["cluster"]:
                entry["cluster"]["view_id"] = "v2"
                entry["cluster"]["failing_nodes"] = [{"id": dead, "address": master_key, "flags": ["fail"]}]
    cluster.hosts["host-a"][7000]["error"] = "Connection refused"
    plan = run(cluster)
    assert actions(plan) == [START, RESTORE_PLACEMENT], plan
    assert plan["decisions"][1]["reason"].startswith(
        "zone b holds 2 of the 3 masters that serve slots (an even spread is 1 at most); %s served slots that a "
        "replica took over; it comes back as a replica: fail over where" % master_key)


def test_a_dead_master_not_yet_replaced_keeps_its_slots_claimed():
    cluster = healthy()
    cluster.hosts["host-a"][7000]["error"] = "Connection refused"
    plan = run(cluster)
    assert actions(plan) == [START]


def test_open_slots_are_fixed_with_the_node_named():
    cluster = healthy()
    cluster.hosts["host-a"][7000]["cluster"]["open_slots"] = [100]
    plan = run(cluster)
    assert actions(plan) == [FIX]
    assert "%s has slot(s) 100 open" % cluster.key("host-a", 7000) in plan["decisions"][0]["reason"]
    assert plan["decisions"][0]["forget_failed"] is False


def test_slots_no_master_claims_are_fixed():
    cluster = healthy()
    cluster.hosts["host-a"][7000]["node"]["slots"] = [[0, 99]]
    plan = run(cluster)
    assert actions(plan) == [FIX, REBALANCE]
    assert "slot(s) no master claims: 100-5461" in plan["decisions"][0]["reason"]


def test_a_slot_two_masters_claim_is_fixed():
    cluster = healthy()
    cluster.hosts["host-b"][7000]["node"]["slots"].append([0, 0])
    plan = run(cluster)
    assert actions(plan) == [FIX]
    assert "slot(s) 0 claimed by more than one master" in plan["decisions"][0]["reason"]


def test_views_that_differ_are_fixed():
    cluster = healthy()
    cluster.hosts["host-c"][7000]["cluster"]["view_id"] = "other"
    plan = run(cluster)
    assert actions(plan) == [FIX] and "the views differ" in plan["decisions"][0]["reason"]


def test_a_ghost_is_forgotten_only_when_nothing_is_being_started():
    cluster = healthy()
    ghost = node_id("10.9.9.9:7000")
    cluster.hosts["host-a"][7000]["cluster"]["failing_nodes"] = [{"id": ghost, "address": "x", "flags": ["fail"]}]
    plan = run(cluster)
    assert actions(plan) == [FIX] and plan["decisions"][0]["forget_failed"] is True
    assert ghost[:8] in plan["decisions"][0]["reason"]
    cluster.hosts["host-b"][7000]["error"] = "Connection refused"
    plan = run(cluster)
    assert actions(plan) == [START, FIX] and plan["decisions"][1]["forget_failed"] is False


def test_a_non_member_becomes_the_replica_of_a_master_short_of_replicas_in_another_zone():
    cluster = healthy(replicas=0)
    cluster.instance("host-a", 7200, known=1)
    plan = run(cluster)
    assert actions(plan) == [ADD]
    add = plan["decisions"][0]
    assert add["role"] == "replica" and add["nodes"] == [cluster.key("host-a", 7200)]
    assert add["master"] != cluster.key("host-a", 7000)


def test_non_members_become_masters_when_every_master_has_its_replicas_and_a_rebalance_follows():
    cluster = healthy()
    cluster.instance("host-a", 7200, known=1)
    plan = run(cluster)
    assert actions(plan) == [ADD, REBALANCE]
    assert plan["decisions"][0]["role"] == "master" and plan["decisions"][0]["master"] is None
    assert cluster.key("host-a", 7200) + " holds 0, its share is 4096" in plan["decisions"][1]["reason"]


def test_an_imbalance_within_the_threshold_moves_nothing():
    cluster = healthy()
    cluster.hosts["host-a"][7000]["node"]["slots"] = [[0, 5400]]
    cluster.hosts["host-b"][7000]["node"]["slots"] = [[5401, 10922]]
    assert run(cluster)["decisions"] == []
    cluster.hosts["host-a"][7000]["node"]["slots"] = [[0, 5000]]
    cluster.hosts["host-b"][7000]["node"]["slots"] = [[5001, 10922]]
    plan = run(cluster)
    assert actions(plan) == [REBALANCE]


def test_an_instance_its_agent_does_not_report_is_noted():
    cluster = healthy()
    reports = cluster.reports()
    reports[0] = HostReport(name=reports[0].name, facts=reports[0].facts, instances=reports[0].instances
                            + (InventoryInstance(host=reports[0].name, address="127.0.0.2", port=7999),))
    plan = decide(reports, NOW, Settings(min_nodes=3)).as_dict()
    assert plan["decisions"] == [] and plan["notes"] == [
        "127.0.0.2:7999 on host-a: its agent does not report port 7999; no decision about it"]


def test_the_history_record_holds_the_topology_and_times_and_nothing_else():
    cluster = healthy()
    cluster.hosts["host-a"][7000]["node"]["password"] = "secret-in-a-new-field"
    cluster.hosts["host-a"][7000]["cluster"]["auth"] = "secret-in-a-new-field"
    record = run(cluster)["record"]
    assert "secret" not in json.dumps(record)
    assert record["collected_at"] == ago(5)
    assert record["hosts"]["host-a"] == {"collected_at": ago(5), "interval": INTERVAL}
    first = next(node for node in record["nodes"] if node["node"] == cluster.key("host-a", 7000))
    assert first["role"] == "master" and first["slots"] == "0-5461" and first["zone"] == "a"


def test_bad_settings_and_times_are_refused():
    with pytest.raises(ReconcileError):
        decide(healthy().reports(), "yesterday", Settings(min_nodes=3))
    with pytest.raises(ReconcileError):
        decide(healthy().reports(), NOW, Settings(min_nodes=0))


@hypothesis_settings(max_examples=60, deadline=None)
@given(masters=st.integers(1, 7), replicas=st.integers(0, 2), reverse=st.booleans())
def test_property_a_healthy_balanced_complete_cluster_needs_no_decision(masters, replicas, reverse):
    reports = healthy(masters, replicas).reports()
    if reverse:
        reports.reverse()
    plan = decide(reports, NOW, Settings(min_nodes=1, replicas=replicas)).as_dict()
    assert plan["refused"] == [] and plan["decisions"] == []
    assert sum(1 for node in plan["record"]["nodes"] if node["role"] == "master") == masters


@hypothesis_settings(max_examples=60, deadline=None)
@given(data=st.data(), masters=st.integers(1, 5), replicas=st.integers(0, 2))
def test_property_stale_or_missing_hosts_are_always_refused_and_nothing_is_decided(data, masters, replicas):
    cluster = healthy(masters, replicas)
    hosts = sorted(cluster.hosts)
    stale = data.draw(st.sets(st.sampled_from(hosts), min_size=1))
    missing = data.draw(st.sets(st.sampled_from(sorted(stale))))
    for host in stale - missing:
        cluster.collected[host] = ago(data.draw(st.integers(3 * INTERVAL + 1, 10 ** 6)))
    # Whatever else is wrong: an instance down, a slot open.
    cluster.hosts[hosts[0]][7000]["error"] = "Connection refused"
    plan = decide(cluster.reports(facts_missing=missing), NOW, Settings(min_nodes=1, replicas=replicas)).as_dict()
    assert plan["decisions"] == []
    assert sorted(line.split(":")[0] for line in plan["refused"]) == sorted(stale)


def test_every_slot_of_the_healthy_builder_is_served_once():
    # The property above is only as good as its builder: every slot claimed exactly once.
    for masters in range(1, 8):
        claimed = [slot for instances in healthy(masters).hosts.values() for entry in instances.values()
                   for first, last in entry["node"]["slots"] for slot in range(first, last + 1)]
        assert sorted(claimed) == list(range(SLOT_COUNT))


def test_masters_crowded_into_one_zone_are_spread_again_by_failovers():
    cluster = healthy()
    dead = node_id(cluster.key("host-a", 7000))
    slots = cluster.hosts["host-a"][7000]["node"]["slots"]
    replica = next(port for port, entry in cluster.hosts["host-b"].items() if entry["node"]["master_id"] == dead)
    cluster.instance("host-b", replica, slots=tuple(map(tuple, slots)), known=6)
    cluster.instance("host-a", 7000, role="replica", master=node_id(cluster.key("host-b", replica)), known=6)
    plan = run(cluster)
    assert plan["notes"] == []
    assert [decision["action"] for decision in plan["decisions"]] == ["restore_placement"]
    assert plan["decisions"][0]["reason"] == (
        "zone b holds 2 of the 3 masters that serve slots (an even spread is 1 at most): fail over where promoting "
        "a synced replica spreads the masters (redis_cluster_failover)")


def test_fresh_instances_never_make_a_second_cluster_while_the_members_are_down():
    cluster = healthy()
    for instances in cluster.hosts.values():
        for entry in instances.values():
            entry["error"] = "Connection refused"
    for host in cluster.hosts:
        cluster.instance(host, 7300, known=1)
    plan = run(cluster, min_nodes=3)
    assert actions(plan) == [START, START, START]
    assert plan["notes"] == ["no member of the cluster answers its agent: nothing but starting them is decided"]
