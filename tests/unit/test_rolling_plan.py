# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The order of a rolling restart, its gates and its waits, on made-up facts of redis_cluster_facts."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils._rolling import (
    FAILBACK, FAILOVER, RESTART, gate_problems, plan_rolling_restart, step_pending, step_stale,
)

SLOT_RANGES = ([[0, 5460]], [[5461, 10922]], [[10923, 16383]])


def node(port: int, master: int | None = None, slots=(), **fields) -> dict:
    """One node of the facts form on 127.0.0.1: a master (slots) or the replica of the master on port master."""
    entry = {
        "id": "%040d" % port, "host": "127.0.0.1", "port": port, "role": "replica" if master else "master",
        "master_id": "%040d" % master if master else None, "flags": [], "reachable": True,
        "slots": [list(r) for r in slots], "slot_count": sum(last - first + 1 for first, last in slots),
        "migrating": [], "importing": [], "cluster_state": "ok", "loading": False,
        "master_link_status": "up" if master else None, "master_sync_in_progress": False if master else None,
    }
    entry.update(fields)
    return entry


def facts_of(nodes, findings=()) -> dict:
    covered = sum(entry["slot_count"] for entry in nodes if entry["reachable"])
    return {"state": "ok", "cluster_state": "ok", "nodes": nodes, "slots_covered": covered,
            "findings": [dict(kind=kind, severity="warning", message=message, nodes=[], slots=[])
                         for kind, message in findings]}


def cluster(replicas: int = 2) -> dict:
    """3 masters on ports 7000-7002, each with replicas on 7000 + 3k + index."""
    nodes = [node(7000 + index, slots=SLOT_RANGES[index]) for index in range(3)]
    nodes += [node(7003 + 3 * copy_index + index, master=7000 + index)
              for copy_index in range(replicas) for index in range(3)]
    return facts_of(nodes)


def hosts_of(facts: dict) -> dict:
    return {"127.0.0.1:%d" % entry["port"]: "host-%d" % (entry["port"] % 3) for entry in facts["nodes"]}


def edited(facts: dict, port: int, **fields) -> dict:
    changed = copy.deepcopy(facts)
    next(entry for entry in changed["nodes"] if entry["port"] == port).update(fields)
    return changed


def actions(plan) -> list:
    return [(step.action, step.port) for step in plan.steps]


def test_replicas_first_then_each_shard_fails_over_restarts_and_fails_back():
    facts = cluster()
    plan = plan_rolling_restart(facts, hosts_of(facts))
    assert plan.blockers == () and plan.warnings == ()
    assert actions(plan) == (
        [(RESTART, port) for port in (7003, 7006, 7004, 7007, 7005, 7008)]
        + [step for master in (7000, 7001, 7002) for step in ((FAILOVER, master), (RESTART, master), (FAILBACK, master))])
    assert [step.expect for step in plan.steps[:6]] == ["synced replica"] * 6
    assert [step.expect for step in plan.steps[6:9]] == ["replica", "synced replica", "master"]
    assert plan.steps[0].host == "host-1" and plan.steps[0].shard == "127.0.0.1:7000"
    assert plan.steps[0].text == "restart replica 127.0.0.1:7003 (of 127.0.0.1:7000) on host-1, then wait until it " \
                                 "is a synced replica"


def test_without_failback_the_masters_stay_replicas():
    facts = cluster(replicas=1)
    plan = plan_rolling_restart(facts, hosts_of(facts), failback=False)
    assert actions(plan) == [(RESTART, 7003), (RESTART, 7004), (RESTART, 7005), (FAILOVER, 7000), (RESTART, 7000),
                             (FAILOVER, 7001), (RESTART, 7001), (FAILOVER, 7002), (RESTART, 7002)]


def test_hosts_narrow_the_restarts_to_their_nodes():
    facts = cluster(replicas=1)
    hosts = hosts_of(facts)  # host-1 runs the master 7000 and the replica 7003 (of 7000)
    plan = plan_rolling_restart(facts, hosts, hosts=["host-1"])
    assert actions(plan) == [(RESTART, 7003), (FAILOVER, 7000), (RESTART, 7000), (FAILBACK, 7000)]
    assert plan_rolling_restart(facts, hosts, hosts=[]).steps == ()
    # A shard without a synced replica blocks only a restart of its master.
    unsynced = edited(facts, 7005, master_link_status="down")  # the replica of 7002, both on host-0
    assert plan_rolling_restart(unsynced, hosts, hosts=["host-1"]).blockers == ()
    assert "the shard of 127.0.0.1:7002" in plan_rolling_restart(unsynced, hosts, hosts=["host-0"]).blockers[0]


def test_a_shard_without_synced_replica_blocks_and_is_named():
    facts = edited(cluster(replicas=1), 7004, master_link_status="down")
    plan = plan_rolling_restart(facts, hosts_of(facts))
    (blocker,) = plan.blockers
    assert "the shard of 127.0.0.1:7001 (5462 slots) has no synced replica" in blocker
    assert "127.0.0.1:7004 has master_link_status:down" in blocker
    assert "redis_cluster_rolling_restart_allow_unprotected" in blocker


def test_allow_unprotected_restarts_that_master_in_place():
    facts = edited(cluster(replicas=1), 7004, master_sync_in_progress=True)
    plan = plan_rolling_restart(facts, hosts_of(facts), allow_unprotected=True)
    assert plan.blockers == ()
    (warning,) = plan.warnings
    assert "127.0.0.1:7001" in warning and "127.0.0.1:7004 is in a full sync from its master" in warning
    assert (FAILOVER, 7001) not in actions(plan) and (RESTART, 7001) in actions(plan)
    in_place = next(step for step in plan.steps if step.port == 7001)
    assert in_place.expect == "master" and "no failover" in in_place.text
    # The unsynced replica is restarted but not waited for to sync.
    assert next(step for step in plan.steps if step.port == 7004).expect == "replica"


def test_a_master_without_replica_blocks():
    facts = facts_of([node(7000 + index, slots=SLOT_RANGES[index]) for index in range(3)])
    plan = plan_rolling_restart(facts, hosts_of(facts))
    assert len(plan.blockers) == 3 and all("it has no replica" in blocker for blocker in plan.blockers)


def test_a_master_without_slots_restarts_without_failover():
    facts = cluster(replicas=1)
    facts["nodes"].append(node(7010))
    plan = plan_rolling_restart(facts, hosts_of(facts))
    assert plan.blockers == ()
    assert (RESTART, 7010) in actions(plan) and (FAILOVER, 7010) not in actions(plan)


def test_gates_name_what_blocks():
    facts = cluster(replicas=1)
    facts = edited(facts, 7001, cluster_state="fail")
    facts = edited(facts, 7002, loading=True)
    facts["findings"].append({"kind": "open_slot", "severity": "warning", "message": "slot(s) 5 are open", "nodes": [],
                              "slots": []})
    facts["findings"].append({"kind": "anti_affinity", "severity": "warning", "message": "shares a zone", "nodes": [],
                              "slots": []})
    problems = gate_problems(facts)
    assert problems == ["slot(s) 5 are open", "cluster_state is fail on 127.0.0.1:7001",
                        "127.0.0.1:7002 is still loading its data set"]
    assert plan_rolling_restart(facts, hosts_of(facts)).blockers[:3] == tuple(problems)


def test_uncovered_slots_and_unconfigured_nodes_block():
    facts = cluster(replicas=1)
    facts["slots_covered"] = 16000
    assert gate_problems(facts) == ["16000 of 16384 slots are covered"]
    plan = plan_rolling_restart({"state": "not_configured", "nodes": [], "findings": []}, {})
    assert plan.steps == () and "form no cluster" in plan.blockers[0]


def test_a_node_on_no_inventory_host_blocks():
    facts = cluster(replicas=1)
    hosts = hosts_of(facts)
    del hosts["127.0.0.1:7005"]
    (blocker,) = plan_rolling_restart(facts, hosts).blockers
    assert "no inventory host of the group runs 127.0.0.1:7005" in blocker


def test_pending_after_a_replica_restart():
    facts = cluster(replicas=1)
    step = plan_rolling_restart(facts, hosts_of(facts)).steps[0].as_dict()
    assert step_pending(facts, step) == []
    syncing = edited(facts, 7003, master_link_status="down")
    assert step_pending(syncing, step) == ["127.0.0.1:7003 has master_link_status:down"]
    flagged = copy.deepcopy(facts)
    flagged["findings"].append({"kind": "node_failing", "severity": "warning", "message": "7003 is flagged fail?",
                                "nodes": [], "slots": []})
    assert step_pending(flagged, step) == ["7003 is flagged fail?"]
    assert step_pending(edited(facts, 7003, role="master"), step) == [
        "127.0.0.1:7003 is a master, not yet a replica"]


def test_pending_after_a_failover_and_a_failback():
    facts = cluster(replicas=1)
    steps = plan_rolling_restart(facts, hosts_of(facts)).steps
    failover = next(step for step in steps if step.action == FAILOVER).as_dict()
    failback = next(step for step in steps if step.action == FAILBACK).as_dict()
    assert step_pending(facts, failover) == ["127.0.0.1:7000 is a master, not yet a replica"]
    assert step_pending(facts, failback) == []
    assert step_pending(facts, dict(failback, node="127.0.0.1:9999")) == ["no node of the cluster is 127.0.0.1:9999"]


def test_a_step_whose_node_changed_role_since_the_plan_is_stale():
    facts = cluster(replicas=1)
    steps = [step.as_dict() for step in plan_rolling_restart(facts, hosts_of(facts)).steps]
    # On the cluster the plan was made from, the replicas' restarts and the failovers fit (the rest fit once the
    # failovers are done).
    first_steps = steps[:3] + [step for step in steps if step["action"] == FAILOVER]
    assert [step_stale(facts, step) for step in first_steps] == [[]] * 6
    replica_restart = next(step for step in steps if step["node"] == "127.0.0.1:7003")
    took_over = edited(edited(facts, 7003, role="master"), 7000, role="replica")
    assert step_stale(took_over, replica_restart) == [
        "127.0.0.1:7003 is a master now, where the plan found a replica (a failover since the run began)"]
    failover = next(step for step in steps if step["action"] == FAILOVER and step["node"] == "127.0.0.1:7000")
    assert step_stale(took_over, failover) == [
        "127.0.0.1:7000 is a replica now, where the plan found a master (a failover since the run began)"]
    failback = next(step for step in steps if step["action"] == FAILBACK and step["node"] == "127.0.0.1:7000")
    assert step_stale(took_over, failback) == []
    assert step_stale(facts, dict(failback, node="127.0.0.1:9999")) == ["no node of the cluster is 127.0.0.1:9999"]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3), st.booleans(), st.lists(st.integers(7003, 7011), max_size=4))
def test_every_node_restarts_once_and_no_shard_loses_two_nodes(replicas, failback, unsynced):
    facts = cluster(replicas)
    for port in unsynced:
        if any(entry["port"] == port for entry in facts["nodes"]):
            facts = edited(facts, port, master_link_status="down")
    plan = plan_rolling_restart(facts, hosts_of(facts), allow_unprotected=True, failback=failback)
    assert plan.blockers == ()
    restarted = [step.node for step in plan.steps if step.action == RESTART]
    assert sorted(restarted) == sorted("127.0.0.1:%d" % entry["port"] for entry in facts["nodes"])
    # A master restarts only once its shard failed over, unless the plan warned that it has no synced replica.
    for step in plan.steps:
        if step.action == RESTART and step.node == step.shard:
            before = plan.steps[:plan.steps.index(step)]
            protected = (FAILOVER, step.port) in [(earlier.action, earlier.port) for earlier in before]
            assert protected or any(step.node in warning for warning in plan.warnings)
    # Replicas all restart before any failover, so each failover finds its shard's replicas back.
    first_failover = next((index for index, step in enumerate(plan.steps) if step.action == FAILOVER), len(plan.steps))
    assert all(step.action == RESTART and step.expect.endswith("replica") for step in plan.steps[:first_failover]
               if step.node != step.shard)
