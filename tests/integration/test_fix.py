# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_fix on states broken with raw commands; every key must survive with its value."""

from __future__ import annotations

import redis
import subprocess
import time

import pytest
from playbook_runs import run_module, run_tasks
from cluster_checks import (
    ACL_USER, Writer, all_keys, assert_healthy, cluster_nodes_fields, cluster_ok, cluster_writes, masters, minimal_acl,
    owner_id, raw, replica_of, reset_stats, seed, slot_owner, wait_for, wait_replicated, write_into_foreign_slot,
    write_keys,
)
from redis.crc import key_slot
from redis_harness import REDIS_CLI, form_cluster, wait_converged
from test_rebalance import slot_counts

from ansible_collections.redisops.cluster.plugins.module_utils._client import ConnectionOptions, NodeConnection
from ansible_collections.redisops.cluster.plugins.module_utils._executor import ExecutionError, Executor
from ansible_collections.redisops.cluster.plugins.module_utils._planner import (
    NO_FAILOVER, REMOVE_NODE, WAIT_CONVERGED, Plan, Step,
)
from ansible_collections.redisops.cluster.plugins.module_utils._topology import NodeAddress

MODULE = "redis_cluster_fix"
ACL_SECRET = "fix-acl-secret"


def keys_in_slot(node, slot: int) -> list:
    return node.call("CLUSTER", "GETKEYSINSLOT", slot, 100000)


def tagged_keys(nodes, tag: str, count: int) -> dict:
    """count keys sharing one slot (hash tag); {key: value}."""
    return write_keys(nodes, count, prefix="{%s}" % tag)


def other_master(nodes, *not_these):
    return next(node for node in masters(nodes) if node not in not_these)


def fix(nodes, **args) -> dict:
    result = run_module(MODULE, dict(seed(nodes), **args))
    assert not result.get("failed"), result.get("msg")
    return result


def assert_fixed(nodes, expected: dict, result: dict) -> None:
    """Repaired: every key the test wrote is there with its value, redis-cli agrees, a rerun changes nothing."""
    assert result["changed"] is True
    assert all_keys(nodes) == expected, "keys changed"
    assert_healthy(nodes[0])
    # Neither a dead node nor a master without replicas is for fix to repair.
    assert [f for f in result["findings_after"] if f["kind"] not in ("node_failing", "master_without_replica")] == [], \
        result["findings_after"]
    assert result["after"]["slots_covered"] == 16384
    assert fix(nodes)["changed"] is False


def migrate(source, target, keys) -> None:
    raw(source, ("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys))


def half_moved(nodes, tag: str, moved=None) -> tuple:
    """The slot of tag opened from its owner to another master, and moved of its keys (all by default) moved:
    (slot, source, target)."""
    slot = key_slot(tag.encode())
    source = slot_owner(nodes, slot)
    target = other_master(nodes, source)
    raw(target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()))
    raw(source, ("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id()))
    migrate(source, target, keys_in_slot(source, slot)[:moved])
    return slot, source, target


def test_half_done_migration_is_finished_while_clients_write(cluster6):
    nodes = cluster6
    expected = tagged_keys(nodes, "move", 400)
    expected.update(write_keys(nodes, 300))
    slot, source, target = half_moved(nodes, "{move}", 150)
    writer = Writer(nodes)
    writer.start()
    try:
        reset_stats(nodes)
        checked = run_module(MODULE, dict(seed(nodes)), check=True)
        assert checked["changed"] and [f for f in checked["findings_before"] if f["kind"] == "open_slot"]
        assert not [w for w in cluster_writes(nodes) if " set " not in w]
        result = fix(nodes)
    finally:
        writer.stop()
    assert any("finish moving open slot %d (250 key(s) left)" % slot in step for step in result["plan"])
    moved = [key for key in keys_in_slot(target, slot) if key.startswith(b"{move}")]
    assert owner_id(nodes[0], slot) == target.node_id() and len(moved) == 400 and keys_in_slot(source, slot) == []
    stored = all_keys(nodes)
    assert {k: v for k, v in stored.items() if not k.startswith(b"online:")} == expected
    assert all(stored.get(key) == value for key, value in writer.acknowledged.items()), "acknowledged write lost"
    assert writer.errors == [] and len(writer.acknowledged) > 0
    assert_healthy(nodes[0])
    assert fix(nodes)["changed"] is False


def test_only_importing_with_a_key_goes_back_to_the_owner(cluster6):
    nodes = cluster6
    expected = tagged_keys(nodes, "imp", 50)
    slot = key_slot(b"{imp}")
    owner = slot_owner(nodes, slot)
    importer = other_master(nodes, owner)
    raw(importer, ("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.node_id()), ("ASKING",), ("SET", "{imp}extra", "x"))
    expected[b"{imp}extra"] = b"x"
    result = fix(nodes)
    assert owner_id(nodes[0], slot) == owner.node_id() and len(keys_in_slot(owner, slot)) == 51
    assert_fixed(nodes, expected, result)


def test_copies_left_importing_by_an_interrupted_quiet_hand_over_go_back_to_the_owner(cluster6):
    """A hand-over without opening the slot on the source (_migrate.hand_over_quietly) stopped between copying the
    keys and the target's claim: the target imports the slot and holds a copy of every key, equal to the owner's."""
    nodes = cluster6
    expected = tagged_keys(nodes, "quiet", 40)
    slot = key_slot(b"{quiet}")
    owner = slot_owner(nodes, slot)
    importer = other_master(nodes, owner)
    copies = [(key, owner.call("DUMP", key)) for key in keys_in_slot(owner, slot)]
    raw(importer, ("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.node_id()),
        *[("RESTORE-ASKING", key, 0, payload, "REPLACE") for key, payload in copies])
    result = fix(nodes)
    assert owner_id(nodes[0], slot) == owner.node_id() and len(keys_in_slot(owner, slot)) == 40
    assert keys_in_slot(importer, slot) == []
    assert_fixed(nodes, expected, result)


def test_keys_a_replica_keeps_of_a_slot_its_master_lost_are_deleted_through_the_master(fresh_nodes):
    """Redis before 7.2 drops the keys of a slot a master loses to another's claim in memory only, and its replica
    keeps them (as after a quiet hand-over whose source stopped before its purge). Clients never read them; a
    promoted replica would bring them back. A deep scan names them, fix (as the minimal ACL user of the docs)
    deletes them through the master, and the owner keeps its own keys, one of them changed and one deleted since."""
    nodes = fresh_nodes(6, extra_args=["--user"] + minimal_acl(ACL_SECRET).split()[1:])
    form_cluster(nodes.nodes, replicas=1)
    login = dict(seed(nodes), login_user=ACL_USER, login_password=ACL_SECRET)
    expected = tagged_keys(nodes, "lost", 30)
    slot = key_slot(b"{lost}")
    source = slot_owner(nodes, slot)
    replica = replica_of(nodes, source)
    with NodeConnection(source.host, source.port, ConnectionOptions()) as conn:
        if conn.passes_on_lost_keys():
            pytest.skip("this server passes the deletion of a lost slot's keys on to its replicas")
    owner = other_master(nodes, source)
    raw(owner, ("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()))
    raw(source, ("MIGRATE", owner.host, owner.port, "", 0, 5000, "COPY", "KEYS", *keys_in_slot(source, slot)))
    raw(owner, ("CLUSTER", "SETSLOT", slot, "NODE", owner.node_id()))
    wait_for(lambda: keys_in_slot(source, slot) == [], message="the source to drop the keys of the slot it lost")
    wait_converged(nodes)
    wait_replicated(source, at_least=1)
    assert len(keys_in_slot(replica, slot)) == 30
    changed, deleted = sorted(expected)[:2]
    owner.call("SET", changed, b"changed")
    owner.call("DEL", deleted)
    expected[changed] = b"changed"
    del expected[deleted]
    assert_healthy(source)  # redis-cli's check reads masters only

    facts = run_module("redis_cluster_facts", dict(login, deep_scan=True))["ansible_facts"]["redis_cluster"]
    (finding,) = [f for f in facts["findings"] if f["kind"] not in ("master_without_replica",)]
    assert finding["kind"] == "replica_stray_keys" and finding["severity"] == "warning"
    assert finding["nodes"] == [replica.node_id()] and finding["slots"] == [[slot, slot]]
    assert "30 key(s)" in finding["message"] and owner.address in finding["message"]
    checked = run_module(MODULE, login, check=True)
    step, wait = checked["plan"]
    assert wait.startswith("wait until every node agrees")
    assert checked["changed"] and "delete the 30 key(s) replica %s" % replica.address in step
    assert len(keys_in_slot(replica, slot)) == 30
    result = run_module(MODULE, login)
    assert not result.get("failed"), result.get("msg")
    assert [f["kind"] for f in result["findings_before"]] == ["replica_stray_keys"]
    assert keys_in_slot(replica, slot) == []
    assert [entry for node in nodes for entry in node.call("ACL", "LOG")] == []
    assert_fixed(nodes, expected, result)
    raw(replica, ("CLUSTER", "FAILOVER"))
    wait_for(lambda: replica.call("ROLE")[0] == b"master", message="the replica promoted")
    wait_converged(nodes)
    assert keys_in_slot(replica, slot) == [] and all_keys(nodes) == expected


def test_only_migrating_is_closed(cluster6):
    nodes = cluster6
    expected = tagged_keys(nodes, "mig", 30)
    slot = key_slot(b"{mig}")
    owner = slot_owner(nodes, slot)
    raw(owner, ("CLUSTER", "SETSLOT", slot, "MIGRATING", other_master(nodes, owner).node_id()))
    result = fix(nodes)
    assert any("close slot %d" % slot in step for step in result["plan"]) and not any("move" in s for s in result["plan"])
    assert owner_id(nodes[0], slot) == owner.node_id()
    assert_fixed(nodes, expected, result)


def test_several_importers_and_a_wrong_partner(cluster6):
    nodes = cluster6
    expected = tagged_keys(nodes, "multi", 80)
    expected[b"{multi}b"] = b"y"
    slot = key_slot(b"{multi}")
    owner = slot_owner(nodes, slot)
    target, bystander = [node for node in masters(nodes) if node is not owner]
    raw(target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.node_id()))
    raw(bystander, ("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.node_id()), ("ASKING",), ("SET", "{multi}b", "y"))
    raw(owner, ("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id()))
    migrate(owner, target, keys_in_slot(owner, slot)[:20])
    result = fix(nodes)
    # The declared pair finishes the move; the stray importer's key follows the slot.
    assert owner_id(nodes[0], slot) == target.node_id() and len(keys_in_slot(target, slot)) == 81
    assert_fixed(nodes, expected, result)


def test_uncovered_slots_with_and_without_keys(cluster6):
    nodes = cluster6
    expected = tagged_keys(nodes, "cov", 60)
    expected[b"{cov}rival"] = b"stray"
    slot = key_slot(b"{cov}")
    holder = slot_owner(nodes, slot)
    rival = other_master(nodes, holder)
    # The holder keeps 60 keys, the rival gets 1 stray key in the same slot, then nobody serves it.
    write_into_foreign_slot(rival, "{cov}rival")
    for node in nodes:
        raw(node, ("CLUSTER", "DELSLOTSRANGE", slot, slot))
        raw(node, ("CLUSTER", "DELSLOTSRANGE", 0, 99))
    result = fix(nodes)
    assert owner_id(nodes[0], slot) == holder.node_id() and len(keys_in_slot(holder, slot)) == 61
    owners = {owner_id(nodes[0], s) for s in range(100)}
    assert len(owners) == 1 and None not in owners
    assert_fixed(nodes, expected, result)


def test_stray_keys_and_a_lost_claim(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 200)
    key = "stray-key"
    expected[key.encode()] = b"mine"
    owner = slot_owner(nodes, key_slot(key.encode()))
    intruder = other_master(nodes, owner)
    write_into_foreign_slot(intruder, key, "mine")
    # The owner of slot 0 forgets it serves 0-9 in its own view; the others still say it does.
    forgetful = slot_owner(nodes, 0)
    raw(forgetful, ("CLUSTER", "DELSLOTSRANGE", 0, 9))
    result = fix(nodes)
    kinds = {f["kind"] for f in result["findings_before"]}
    assert {"multiple_owners", "inconsistent_config"} <= kinds
    assert key.encode() in keys_in_slot(owner, key_slot(key.encode()))
    assert all(owner_id(node, 5) == forgetful.node_id() for node in nodes)
    assert_fixed(nodes, expected, result)


def test_conflicting_copies_stop_unless_replace(cluster6):
    nodes = cluster6
    key = "twice"
    client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
    client.set(key, "owner-copy")
    client.close()
    owner = slot_owner(nodes, key_slot(key.encode()))
    write_into_foreign_slot(other_master(nodes, owner), key, "stray-copy")
    run = run_tasks([{"redisops.cluster.redis_cluster_fix": seed(nodes)}])
    assert run.result["failed"] and "twice" in run.result["msg"] and "replace: true" in run.result["msg"]
    # The slot was opened on the stray copy's node before the conflict showed: the failed run wrote.
    assert run.result["changed"] is True
    assert owner.call("GET", key) == b"owner-copy"
    replaced = fix(nodes, replace=True)
    assert replaced["changed"] and owner.call("GET", key) == b"stray-copy"


def test_unreachable_master_needs_consent(cluster3):
    nodes = cluster3
    write_keys(nodes, 300)
    victim = slot_owner(nodes, 0)
    victim_id = victim.node_id()
    survivors = [node for node in nodes if node is not victim]
    kept = all_keys(survivors)
    victim.kill()
    wait_for(lambda: all(any(f[0] == victim_id and "fail" in f[2].split(",") for f in cluster_nodes_fields(n))
                         for n in survivors), message="the dead master flagged fail")
    refused = run_module(MODULE, {"login_host": "127.0.0.1", "login_port": survivors[0].port})
    assert refused["failed"] and "allow_unreachable_masters" in refused["msg"] and victim.address in refused["msg"]
    result = run_module(MODULE, {"login_host": "127.0.0.1", "login_port": survivors[0].port,
                                 "allow_unreachable_masters": True, "forget_failed": True})
    assert result["changed"] and not result.get("failed"), result.get("msg")
    assert all_keys(survivors) == kept
    assert_healthy(survivors[0])
    assert all(victim_id not in [f[0] for f in cluster_nodes_fields(node)] for node in survivors)


def test_ghost_nodes_are_forgotten_only_when_asked(cluster6):
    nodes = cluster6
    replica = next(node for node in nodes if node.call("ROLE")[0] == b"slave")
    ghost_id = replica.node_id()
    replica.kill()
    alive = [node for node in nodes if node is not replica]
    wait_for(lambda: all(any(f[0] == ghost_id and "fail" in f[2].split(",") for f in cluster_nodes_fields(n))
                         for n in alive), message="the replica flagged fail everywhere")
    plain = run_module(MODULE, {"login_host": "127.0.0.1", "login_port": alive[0].port})
    assert plain["changed"] is False and not any("forget" in step for step in plain["plan"])
    result = run_module(MODULE, {"login_host": "127.0.0.1", "login_port": alive[0].port, "forget_failed": True})
    assert result["changed"] and sum("forget" in step for step in result["plan"]) == 5
    assert all(ghost_id not in [f[0] for f in cluster_nodes_fields(node)] for node in alive)


def two_masters(fresh_nodes):
    """A cluster of two masters (redis-cli creates no fewer than three)."""
    nodes = fresh_nodes(2)
    first, second = nodes
    first.call("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
    second.call("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
    first.call("CLUSTER", "SET-CONFIG-EPOCH", 1)
    second.call("CLUSTER", "SET-CONFIG-EPOCH", 2)
    first.call("CLUSTER", "MEET", "127.0.0.1", second.port, second.bus_port)
    wait_converged(nodes.nodes)
    return nodes


@pytest.mark.parametrize("masters_count", [2, 3])
@pytest.mark.parametrize("told", ["source", "target"])
def test_half_finished_hand_over_is_repaired_in_one_run(request, fresh_nodes, masters_count, told):
    """Redis' 20-half-migrated-slot case: every key moved, then SETSLOT NODE target sent to one side only."""
    nodes = request.getfixturevalue("cluster3") if masters_count == 3 else two_masters(fresh_nodes)
    expected = tagged_keys(nodes, "half", 151)
    expected.update(write_keys(nodes, 200))
    slot, source, target = half_moved(nodes, "{half}")
    raw(source if told == "source" else target, ("CLUSTER", "SETSLOT", slot, "NODE", target.node_id()))
    checked = run_module(MODULE, dict(seed(nodes)), check=True)
    if told == "source":
        # Nobody claims the slot: the source gave it away, the target only imports it.
        assert any(f["kind"] == "uncovered_slots" for f in checked["findings_before"]), checked["findings_before"]
    assert not any("from itself" in step or "import slot %d from %s" % (slot, target.address) in step
                   for step in checked["plan"])
    result = fix(nodes)
    assert owner_id(nodes[0], slot) == target.node_id() and len(keys_in_slot(target, slot)) == 151
    assert_fixed(nodes, expected, result)


def test_compound_breakage_is_repaired_in_one_run(cluster6):
    """A slot half-moved with both sides open, an owner that dropped four of its slots (two hold keys) with
    DELSLOTS, and a dead replica: service comes back before any key moves, and one run repairs it all."""
    nodes = cluster6
    expected = tagged_keys(nodes, "open", 50)
    expected.update(write_keys(nodes, 300))
    for slot in (16381, 16383):
        tag = next("t%d" % n for n in range(100000) if key_slot(("t%d" % n).encode()) == slot)
        expected.update(tagged_keys(nodes, tag, 5))
    open_slot, source, target = half_moved(nodes, "{open}", 10)
    dropping = slot_owner(nodes, 16380)
    raw(dropping, ("CLUSTER", "DELSLOTSRANGE", 16380, 16383))
    victim = next(node for node in nodes if node.call("ROLE")[0] == b"slave")
    victim.kill()
    alive = [node for node in nodes if node is not victim]
    result = run_module(MODULE, {"login_host": "127.0.0.1", "login_port": alive[0].port})
    assert not result.get("failed"), result.get("msg")
    plan = result["plan"]
    first_key_move = next(i for i, step in enumerate(plan) if " move " in step or "finish moving" in step)
    assert any("add slots 16380-16383" in step or "add 4 slots 16380-16383" in step for step in plan[:first_key_move]), plan
    assert owner_id(alive[0], open_slot) == target.node_id()
    assert all_keys(alive) == expected
    assert all(b"cluster_state:ok" in node.call("CLUSTER", "INFO") for node in alive)
    again = run_module(MODULE, {"login_host": "127.0.0.1", "login_port": alive[0].port})
    assert again["changed"] is False, again["plan"]


def test_a_wait_that_cannot_succeed_fails_at_once(cluster3):
    """Slots nobody claims never get served by waiting: the wait says so at once instead of after wait_timeout."""
    nodes = cluster3
    owner = slot_owner(nodes, 0)
    raw(owner, ("CLUSTER", "DELSLOTSRANGE", 0, 9))
    addresses = [NodeAddress(node.host, node.port) for node in nodes]
    executor = Executor(addresses, ConnectionOptions(), wait_timeout=60)
    started = time.monotonic()
    with pytest.raises(ExecutionError) as failure:
        executor.run(Plan((Step(WAIT_CONVERGED, "", description="wait until every node agrees"),)))
    assert time.monotonic() - started < 10
    assert "0-9 are claimed by no master" in str(failure.value) and "redis_cluster_fix" in str(failure.value)


def test_a_removal_does_not_forget_a_node_that_serves_slots_again(cluster3):
    """A drained master is a replica of the master that took its last slots; if that master fails, a failover may
    promote it between the removal's plan and its FORGET. The removal step then stops, and no node forgets it."""
    nodes = cluster3
    leaving = slot_owner(nodes, 0)
    leaving_id = leaving.node_id()
    addresses = [NodeAddress(node.host, node.port) for node in nodes]
    executor = Executor(addresses, ConnectionOptions(), wait_timeout=10)
    step = Step(REMOVE_NODE, "", leaving_id, (leaving_id, leaving.address), "every node forgets %s" % leaving.address)
    with pytest.raises(ExecutionError) as failure:
        executor.run(Plan((step,)))
    assert "serves" in str(failure.value) and "0-" in str(failure.value), str(failure.value)
    assert all(leaving_id in node.cluster_nodes() for node in nodes)
    assert len(leaving.cluster_nodes().splitlines()) == len(nodes)
    assert_healthy(nodes[0])


def test_a_leaving_master_is_not_elected_once_drained(fresh_nodes):
    """The removal keeps the leaving master out of failovers before its drain: once its last slot is gone it is a
    replica of the master that took it, and that master failing must not promote it. Its reset puts the setting
    back. Four masters, so that the two left to vote are a majority of the three that serve slots."""
    nodes = fresh_nodes(4).nodes
    form_cluster(nodes, replicas=0)
    leaving = slot_owner(nodes, 0)
    taker = other_master(nodes, leaving)
    write_keys(nodes, 200)
    executor = Executor([NodeAddress(node.host, node.port) for node in nodes], ConnectionOptions(), wait_timeout=20)
    executor.run(Plan((Step(NO_FAILOVER, leaving.address, leaving.node_id(), (), "no failover"),)))
    assert leaving.client().config_get("cluster-replica-no-failover") == {"cluster-replica-no-failover": "yes"}
    served = slot_counts(leaving)[leaving.node_id()]
    subprocess.run([REDIS_CLI, "--cluster", "reshard", leaving.address, "--cluster-from", leaving.node_id(),
                    "--cluster-to", taker.node_id(), "--cluster-slots", str(served), "--cluster-yes"],
                   stdout=subprocess.DEVNULL, check=True, timeout=120)
    wait_for(lambda: leaving.call("ROLE")[0] == b"slave", 10, "the drained master follows the master that took its slots")
    taker.pause()
    try:
        # Past the node timeout (2 s), the failure report and an election's delay (0.5 s and up).
        time.sleep(6)
        assert leaving.call("ROLE")[0] == b"slave"
        assert not all(cluster_ok(node) for node in nodes if node is not taker)
    finally:
        taker.resume()
    wait_for(lambda: all(cluster_ok(node) for node in nodes), 20,
             "the cluster is whole again once the master answers")
    step = Step(REMOVE_NODE, "", leaving.node_id(), (leaving.node_id(), leaving.address), "remove")
    executor.run(Plan((step,)))
    assert leaving.client().config_get("cluster-replica-no-failover") == {"cluster-replica-no-failover": "no"}
