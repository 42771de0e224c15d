# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_facts through ansible-playbook against real redis-server clusters, healthy and broken."""

from __future__ import annotations

import time

from playbook_runs import run_module, run_tasks
from cluster_checks import (
    facts_of, findings, node_ids, redis_cli_check, seed, slot_owner, write_into_foreign_slot, write_keys,
)
from redis.crc import key_slot
from redis_harness import form_cluster, free_ports

MODULE = "redis_cluster_facts"


def serves(node_facts: dict, slot: int) -> bool:
    return any(first <= slot <= last for first, last in node_facts["slots"])


def test_healthy_cluster_from_one_seed(cluster6):
    write_keys(cluster6, 500)
    run = run_tasks([
        {"redisops.cluster.redis_cluster_facts": seed(cluster6, 3)},
        {"redisops.cluster.redis_cluster_facts": seed(cluster6, 3), "check_mode": True},
    ])
    normal, checked = (facts_of(result) for result in run.results)
    assert run.results[0]["changed"] is False and isinstance(run.results[0]["elapsed_ms"], int)
    assert normal["state"] == "ok" and normal["findings"] == [] and normal["cluster_state"] == "ok"
    assert normal["slots_covered"] == 16384 and normal["masters"] == 3 and normal["replicas"] == 3
    assert normal["reachable_nodes"] == 6
    ids = node_ids(cluster6)
    assert {(node["port"], node["id"]) for node in normal["nodes"]} == set(ids.items())
    masters = [node for node in normal["nodes"] if node["role"] == "master"]
    assert sum(node["slot_count"] for node in masters) == 16384
    assert sum(node["keys"] for node in masters) == 500
    # Valkey names itself and its version apart from the redis_version it keeps for old clients.
    servers = {node.port: node.client().info("server") for node in cluster6}
    for node in normal["nodes"]:
        info = servers[node["port"]]
        expected = ("valkey", info["valkey_version"]) if "valkey_version" in info else ("redis", info["redis_version"])
        assert (node["server_name"], node["server_version"]) == expected and node["redis_version"] == info["redis_version"]
        assert node["reachable"] and node["used_memory"] > 0
        assert node["cluster_state"] == "ok" and node["loading"] is False
        if node["role"] == "replica":
            assert node["master_id"] in {m["id"] for m in masters} and node["slots"] == []
            assert node["master_link_status"] == "up" and node["master_sync_in_progress"] is False
        else:
            assert node["master_link_status"] is None and node["master_sync_in_progress"] is None
    # The reference tool agrees: all covered, no open slot.
    assert "[OK] All 16384 slots covered." in redis_cli_check(cluster6[0])
    # Check mode reads the same cluster the same way.
    assert checked["state"] == "ok" and len(checked["nodes"]) == 6


def test_fresh_nodes_are_not_configured(fresh_nodes):
    nodes = fresh_nodes(3)
    facts = facts_of(run_module(MODULE, {"nodes": nodes.addresses}))
    assert facts["state"] == "not_configured" and facts["findings"] == []
    assert len(facts["nodes"]) == 3 and facts["slots_covered"] == 0
    assert all(node["role"] == "master" and node["slot_count"] == 0 for node in facts["nodes"])


def test_open_slot_names_both_nodes(cluster6):
    slot = key_slot(b"moving")
    source = slot_owner(cluster6, slot)
    target = slot_owner(cluster6, (slot + 8000) % 16384)
    source_id, target_id = source.node_id(), target.node_id()
    target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    facts = facts_of(run_module(MODULE, seed(cluster6)))
    (finding,) = findings(facts, "open_slot")
    assert finding["nodes"] == [source_id, target_id] and finding["slots"] == [[slot, slot]]
    assert source.address in finding["message"] and target.address in finding["message"]
    assert facts["state"] == "degraded"
    assert "migrating state" in redis_cli_check(cluster6[0])


def test_slots_deleted_everywhere_are_uncovered(cluster6):
    owner = slot_owner(cluster6, 0)
    for node in cluster6:
        node.call("CLUSTER", "DELSLOTSRANGE", 0, 99)
    facts = facts_of(run_module(MODULE, seed(cluster6, 1)))
    (finding,) = findings(facts, "uncovered_slots")
    assert finding["slots"] == [[0, 99]] and "100 slot(s)" in finding["message"]
    assert facts["state"] == "failed" and facts["slots_covered"] == 16384 - 100
    assert [node["slots"][0][0] for node in facts["nodes"] if node["port"] == owner.port] == [100]


def test_slots_deleted_on_the_owner_only_disagree(cluster6):
    owner = slot_owner(cluster6, 0)
    owner.call("CLUSTER", "DELSLOTSRANGE", 0, 9)
    facts = facts_of(run_module(MODULE, seed(cluster6, 1)))
    (finding,) = findings(facts, "inconsistent_config")
    assert finding["nodes"] == [owner.node_id()] and finding["slots"] == [[0, 9]]
    # The others still name the owner, but nobody serves the slots: they are uncovered.
    (uncovered,) = findings(facts, "uncovered_slots")
    assert uncovered["slots"] == [[0, 9]] and owner.address in uncovered["message"]
    assert facts["state"] == "failed" and facts["slots_covered"] == 16384 - 10
    report = redis_cli_check(cluster6[0])
    assert "Nodes don't agree about configuration" in report and "Not all 16384 slots are covered" in report


def test_killed_master_is_reported_then_failed_over(cluster6):
    victim = slot_owner(cluster6, 0)
    victim_id = victim.node_id()
    survivor = next(node for node in cluster6 if node is not victim)
    victim.kill()
    facts = facts_of(run_module(MODULE, {"login_host": "127.0.0.1", "login_port": survivor.port}))
    (unreachable,) = findings(facts, "node_unreachable")
    assert unreachable["nodes"] == [victim_id] and victim.address in unreachable["message"]
    assert facts["state"] in ("degraded", "failed")
    assert [node["reachable"] for node in facts["nodes"] if node["id"] == victim_id] == [False]
    # Wait for the replica to take over and for every node to serve again (each leaves cluster_state:fail when
    # it learns of the promotion, a moment apart); then the promoted master stands alone.
    deadline = time.monotonic() + 30
    while True:
        facts = facts_of(run_module(MODULE, {"login_host": "127.0.0.1", "login_port": survivor.port}))
        promoted = [n for n in facts["nodes"] if n["id"] != victim_id and n["role"] == "master" and serves(n, 0)]
        if promoted and facts["state"] != "failed":
            break
        assert time.monotonic() < deadline, "no failover within 30 s (last state %s)" % facts["state"]
        time.sleep(0.5)
    new_master = promoted[0]
    assert facts["state"] == "degraded" and facts["slots_covered"] == 16384
    failing = findings(facts, "node_failing")
    assert [f["nodes"] for f in failing] == [[victim_id]] and "flagged fail" in failing[0]["message"]
    assert [f["nodes"] for f in findings(facts, "master_without_replica")] == [[new_master["id"]]]


def test_keys_in_an_unserved_slot_need_a_deep_scan(cluster6):
    key = "stray-key"
    owner = slot_owner(cluster6, key_slot(key.encode()))
    intruder = next(node for node in cluster6 if node.call("ROLE")[0] == b"master" and node is not owner)
    write_into_foreign_slot(intruder, key)
    shallow = facts_of(run_module(MODULE, seed(cluster6)))
    assert findings(shallow, "multiple_owners") == []
    deep = facts_of(run_module(MODULE, dict(seed(cluster6), deep_scan=True)))
    (finding,) = findings(deep, "multiple_owners")
    slot = key_slot(key.encode())
    assert finding["nodes"] == [intruder.node_id()] and finding["slots"] == [[slot, slot]]
    assert owner.address in finding["message"] and "1 key(s)" in finding["message"]
    assert deep["state"] == "degraded"


def test_masters_without_replicas(cluster3):
    nodes = cluster3
    facts = facts_of(run_module(MODULE, seed(nodes)))
    assert sorted(f["nodes"][0] for f in findings(facts, "master_without_replica")) == sorted(node_ids(nodes).values())
    assert facts["state"] == "degraded" and facts["replicas"] == 0


def test_anti_affinity_from_zone_labels(cluster6):
    ids = node_ids(cluster6)
    by_id = {ids[node.port]: node for node in cluster6}
    masters = {}
    for line in cluster6[0].cluster_nodes().splitlines():
        fields = line.split()
        if fields[3] != "-":
            masters[fields[0]] = fields[3]
    replica_id, master_id = sorted(masters.items())[0]
    zones = {master_id: "zone-a", replica_id: "zone-a"}
    spread = iter(["zone-b", "zone-c", "zone-b", "zone-c"])
    specs = [{"host": "127.0.0.1", "port": node.port, "zone": zones.get(ids[node.port]) or next(spread)}
             for node in cluster6]
    # Other pairs must be split: give each remaining replica its master's opposite zone.
    for replica, master in masters.items():
        if replica != replica_id:
            master_spec = next(s for s in specs if s["port"] == by_id[master].port)
            replica_spec = next(s for s in specs if s["port"] == by_id[replica].port)
            replica_spec["zone"] = "zone-c" if master_spec["zone"] == "zone-b" else "zone-b"
    facts = facts_of(run_module(MODULE, {"nodes": specs}))
    (finding,) = findings(facts, "anti_affinity")
    assert finding["nodes"] == [replica_id, master_id] and "zone zone-a" in finding["message"]
    assert {node["id"]: node["labels"]["zone"] for node in facts["nodes"]}[replica_id] == "zone-a"


def test_discovered_empty_master_and_unjoined_node(cluster6, fresh_nodes):
    extra = fresh_nodes(2)
    joined, unjoined = extra[0], extra[1]
    cluster6[0].call("CLUSTER", "MEET", "127.0.0.1", joined.port, joined.bus_port)
    deadline = time.monotonic() + 15
    while b"cluster_known_nodes:7" not in cluster6[5].call("CLUSTER", "INFO"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    facts = facts_of(run_module(MODULE, {"nodes": [cluster6[0].address, unjoined.address]}))
    assert len(facts["nodes"]) == 8 and facts["masters"] == 5
    (imbalance,) = findings(facts, "imbalance")
    assert joined.node_id() in imbalance["nodes"] and facts["imbalance_pct"] == 100.0
    (unjoined_finding,) = findings(facts, "node_not_joined")
    assert unjoined_finding["nodes"] == [unjoined.node_id()]


def test_user_errors_fail_cleanly(fresh_nodes):
    plain = fresh_nodes(1, cluster=False)[0]
    dead_port = free_ports(1)[0]
    run = run_tasks([
        {"redisops.cluster.redis_cluster_facts": {"login_host": "127.0.0.1", "login_port": dead_port}},
        {"redisops.cluster.redis_cluster_facts": {"login_host": "127.0.0.1", "login_port": plain.port}},
        {"redisops.cluster.redis_cluster_facts": {"nodes": ["127.0.0.1"]}},
        {"redisops.cluster.redis_cluster_facts": {"nodes": [{"host": "127.0.0.1", "port": 1, "colour": "red"}]}},
        {"redisops.cluster.redis_cluster_facts": {"login_port": 1, "connect_timeout": 0}},
    ])
    unreachable, not_cluster, no_port, bad_key, bad_timeout = run.results
    assert unreachable["failed"] and "no seed node could be reached" in unreachable["msg"]
    assert str(dead_port) in unreachable["msg"]
    assert not_cluster["failed"] and "cluster-enabled yes" in not_cluster["msg"]
    assert no_port["failed"] and no_port["msg"].startswith("nodes:") and "has no port" in no_port["msg"]
    assert bad_key["failed"] and "unknown keys colour" in bad_key["msg"]
    assert bad_timeout["failed"] and "connect_timeout must be a positive" in bad_timeout["msg"]
    assert "Traceback" not in run.output


def test_password_from_environment_never_shows(fresh_nodes):
    secret = "s3cr3t-Pa55-for-test"
    nodes = fresh_nodes(3, password=secret)
    form_cluster(nodes.nodes, replicas=0)
    run = run_tasks([
        {"redisops.cluster.redis_cluster_facts": {"login_host": "127.0.0.1", "login_port": nodes[0].port}},
        {"redisops.cluster.redis_cluster_facts": {"login_host": "127.0.0.1", "login_port": nodes[0].port,
                                                  "login_password": "wrong-" + secret}},
    ], env={"REDIS_CLUSTER_PASSWORD": secret}, verbosity=3)
    good, wrong = run.results
    assert facts_of(good)["masters"] == 3 and facts_of(good)["reachable_nodes"] == 3
    assert wrong["failed"] and "login_password" in wrong["msg"]
    assert secret not in run.output and secret not in str(run.results)


def test_module_defaults_group(cluster6):
    run = run_tasks([{"redisops.cluster.redis_cluster_facts": {}}],
                    module_defaults={"group/redisops.cluster.redis_cluster": seed(cluster6)})
    assert facts_of(run.result)["state"] == "ok"
