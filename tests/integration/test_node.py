# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_node on real clusters: adding, removing and replacing masters and replicas, dead ones too; refusals."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time

from playbook_runs import run_tasks
from cluster_checks import (
    all_keys, assert_clients_kept_working, assert_healthy, client_keys, clients_writing, cluster_nodes_fields,
    cluster_ok, cluster_writes, command_counts, masters, own_ranges, reset_stats, seed, slot_owner, wait_for,
    wait_replicated, write_keys, Writer,
)
from redis_harness import RedisNode, free_ports
from test_rebalance import ok, slot_counts

MODULE = "redisops.cluster.redis_cluster_node"


def node_tasks(*args_list, check: bool = False) -> list:
    """One playbook of redis_cluster_node tasks, one per args dict; their results in order."""
    return run_tasks([{MODULE: args} for args in args_list], check=check).results


def node_task(args: dict, check: bool = False) -> dict:
    return node_tasks(args, check=check)[0]


def refused(result: dict, *words) -> str:
    """The failure message, once it is a failure that changed nothing and names every one of words."""
    assert result.get("failed"), result
    assert not result.get("changed"), result
    message = result["msg"]
    assert all(word in message for word in words), message
    return message


def known_by(nodes, node_id: str) -> list:
    """Addresses of the live nodes whose CLUSTER NODES lists node_id."""
    return [node.address for node in nodes if node.process.poll() is None and node_id in node.cluster_nodes()]


def assert_gone(nodes, node_id: str) -> None:
    """No live node lists node_id, now and a node timeout later (gossip brings a node back that some still know)."""
    assert known_by(nodes, node_id) == []
    time.sleep(2.5)  # more than the harness's node timeout (2 s): every node has pinged every other
    assert known_by(nodes, node_id) == []


def assert_reset(node) -> None:
    """The node forgot the cluster: it knows only itself, serves nothing and holds no key."""
    fields = cluster_nodes_fields(node)
    assert len(fields) == 1 and "myself" in fields[0][2], fields
    assert own_ranges(fields[0]) == [] and node.call("DBSIZE") == 0


def master_of(replica) -> str:
    """The master id in the replica's own view ('-' for a master)."""
    return next(fields[3] for fields in cluster_nodes_fields(replica) if "myself" in fields[2])


def link_up(replica) -> bool:
    return replica.client().info("replication").get("master_link_status") == "up"


def replicas_of(nodes, master) -> list:
    master_id = master.node_id()
    return [node for node in live(nodes) if node is not master and master_of(node) == master_id]


def ranges_of(node, node_id: str) -> list:
    return next(own_ranges(fields) for fields in cluster_nodes_fields(node) if fields[0] == node_id)


def flags_of(node, node_id: str) -> set:
    return next(set(fields[2].split(",")) for fields in cluster_nodes_fields(node) if fields[0] == node_id)


def live(nodes) -> list:
    return [node for node in nodes if node.process.poll() is None]


def reset_stats_replicated(nodes) -> None:
    """CONFIG RESETSTAT once the replicas have applied every write so far (else they count it after the reset)."""
    for master in masters(nodes):
        wait_replicated(master)
    reset_stats(nodes)


def kill_and_wait_flagged(nodes, victim) -> str:
    """Kill victim; back once every live node flags it fail. Its id."""
    victim_id = victim.node_id()
    victim.kill()
    wait_for(lambda: all("fail" in flags_of(node, victim_id) for node in live(nodes)), timeout=30,
             message="every node to flag %s as failed" % victim.address)
    return victim_id


def kill_master_and_wait_failover(nodes, master):
    """Kill a master once its replica holds every write; back once the replica has taken over and every node agrees.
    (the replica, the master's id)."""
    (replica,) = replicas_of(nodes, master)
    wait_replicated(master)
    master_id = kill_and_wait_flagged(nodes, master)
    wait_for(lambda: replica.call("ROLE")[0] == b"master", timeout=30, message="the replica to take over")
    wait_for(lambda: all(master_of(node) != master_id and cluster_ok(node) for node in live(nodes)), timeout=30,
             message="the other replicas to follow and every node to serve again")
    return replica, master_id


def a_master_besides(nodes, *excluded):
    """A live master other than nodes[0] (the seed every task is given) and the excluded ones."""
    return next(node for node in reversed(masters(nodes)) if node is not nodes[0] and node not in excluded)


# --- add ---------------------------------------------------------------------------------------------------------


def test_add_master_with_rebalance_while_clients_write(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 20000)
    extra = fresh_nodes(1)[0]
    everyone = list(nodes) + [extra]
    task = dict(seed(nodes), node=extra.address, role="master", rebalance=True)
    reset_stats_replicated(everyone)
    planned = ok(node_task(task, check=True))
    assert planned["changed"] and planned["plan"] and planned["state_id"]
    assert any(extra.address in line for line in planned["plan"]), planned["plan"]
    # Check mode wrote nothing: no MEET, no slot moved, the node still alone.
    assert cluster_writes(everyone) == []
    assert len(cluster_nodes_fields(extra)) == 1
    with clients_writing(nodes) as writers:
        result, again = node_tasks(dict(task, expect_state_id=planned["state_id"]), task)
    ok(result)
    assert result["changed"] and result["slots_moved"] == 4096 and result["keys_moved"] > 0
    assert sorted(slot_counts(nodes[0]).values()) == [4096] * 4
    assert slot_counts(nodes[0])[extra.node_id()] == 4096
    assert all(extra.node_id() in node.cluster_nodes() for node in nodes)
    stored = all_keys(everyone)
    assert client_keys(stored) == expected
    assert_clients_kept_working(writers, stored)
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


def test_a_slow_client_meets_the_new_master_before_the_moves_go_full_speed(cluster6, fresh_nodes):
    """A redis-py client writing 20 keys a second meets a master that served no slot only after seconds; the moves
    stay at one slot at a time until it has. With the grace a fixed 2 s, this client raised AttributeError on an ASK
    towards the unknown master in 1 of 2 runs once the moves went to full speed."""
    nodes = cluster6
    expected = write_keys(nodes, 20000)
    extra = fresh_nodes(1)[0]
    writer = Writer(nodes, interval=0.05)
    writer.start()
    try:
        result = node_task(dict(seed(nodes), node=extra.address, role="master", rebalance=True))
    finally:
        writer.stop()
    assert ok(result)["changed"] and slot_counts(nodes[0])[extra.node_id()] == 4096
    stored = all_keys(list(nodes) + [extra])
    assert client_keys(stored) == expected
    assert_clients_kept_working([writer], stored)


def port_pair_below(limit: int) -> int:
    """A port p below limit with p and p + 1 (its bus port) free; the harness's ports may lie anywhere above 1024."""
    for port in range(limit - 2, 1024, -1):
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair below %d" % limit)


@contextlib.contextmanager
def node_sorted_first(nodes):
    """A fresh node whose address sorts before every node of nodes (its port is lower)."""
    workdir = tempfile.mkdtemp(prefix="redisops-test-")
    port = port_pair_below(min(node.port for node in nodes))
    node = RedisNode(port, port + 1, workdir)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_add_master_whose_address_sorts_before_every_member(cluster3):
    nodes = cluster3
    with node_sorted_first(nodes) as extra:
        task = dict(seed(nodes), node=extra.address, wait_timeout=20)
        result, again = node_tasks(task, task)
        assert ok(result)["changed"]
        assert all(extra.node_id() in node.cluster_nodes() for node in nodes)
        assert len(cluster_nodes_fields(extra)) == 4 and extra.call("ROLE")[0] == b"master"
        assert ok(again)["changed"] is False
        assert_healthy(nodes[0])


def test_add_replica_picks_a_master_in_another_zone(cluster3, fresh_nodes):
    nodes = cluster3
    first, second, third = masters(nodes)
    standing, extra = fresh_nodes(2)
    # third already has a replica; first and second have none, but they share the new replica's zone.
    nodes[0].call("CLUSTER", "MEET", "127.0.0.1", standing.port, standing.bus_port)
    wait_for(lambda: all(standing.node_id() in node.cluster_nodes() for node in nodes) and len(
        cluster_nodes_fields(standing)) == 4, message="the standing replica known everywhere")
    standing.call("CLUSTER", "REPLICATE", third.node_id())
    wait_for(lambda: link_up(standing), message="the standing replica's link")
    listed = [dict(host="127.0.0.1", port=node.port, zone=zone)
              for node, zone in ((first, "a"), (second, "a"), (third, "b"), (standing, "c"))]
    task = dict(nodes=listed, node=extra.address, role="replica", zone="a")
    result, again = node_tasks(task, task)
    assert ok(result)["changed"]
    assert extra.call("ROLE")[0] == b"slave" and master_of(extra) == third.node_id()
    # The module waits for the link: up as soon as it returns.
    assert link_up(extra)
    assert ok(again)["changed"] is False
    assert_healthy(nodes[0])


# --- remove ------------------------------------------------------------------------------------------------------


def test_remove_master_holding_keys_while_clients_write(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 20000)
    leaving = a_master_besides(nodes)
    leaving_id = leaving.node_id()
    (its_replica,) = replicas_of(nodes, leaving)
    assert leaving.call("DBSIZE") > 0
    staying = [node for node in nodes if node is not leaving]
    task = dict(seed(nodes), node=leaving.address, state="absent")
    reset_stats_replicated(nodes)
    planned = ok(node_task(task, check=True))
    assert planned["changed"] and any(leaving.address in line for line in planned["plan"]), planned["plan"]
    assert any("takes no part in failovers" in line for line in planned["plan"]), planned["plan"]
    assert cluster_writes(nodes) == [] and slot_counts(nodes[0])[leaving_id] > 0
    with clients_writing(nodes) as writers:
        result, again = node_tasks(dict(task, expect_state_id=planned["state_id"]), task)
    ok(result)
    assert result["changed"] and result["keys_moved"] > 0 and result["slots_moved"] > 0
    assert_gone(staying, leaving_id)
    assert_reset(leaving)
    # Kept out of failovers while it left (one CONFIG SET), and given its setting back after its reset (another).
    assert command_counts(leaving)["config|set"] == 2
    assert leaving.client().config_get("cluster-replica-no-failover") == {"cluster-replica-no-failover": "no"}
    counts = slot_counts(nodes[0])
    assert leaving_id not in counts and sum(counts.values()) == 16384
    # Its replica serves a master that stays.
    wait_for(lambda: master_of(its_replica) in counts and link_up(its_replica), message="the orphan replica to move")
    stored = all_keys(staying)
    assert client_keys(stored) == expected
    assert_clients_kept_working(writers, stored)
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


def test_a_user_without_config_removes_a_master_without_the_failover_guard(cluster3):
    """An ACL user that may not run CONFIG still removes a master: the guard against its election is left out, and
    the leaving node's ACL LOG holds the refused CONFIG GET and nothing else."""
    nodes = cluster3
    expected = write_keys(nodes, 2000)
    for node in nodes:
        node.call("ACL", "SETUSER", "operator", "on", ">op-secret", "~*", "&*", "+@all", "-config")
    leaving = slot_owner(nodes, 0)
    leaving_id = leaving.node_id()
    result = node_task(dict(seed(nodes), node=leaving.address, state="absent", login_user="operator",
                            login_password="op-secret"))
    assert ok(result)["changed"] and result["slots_moved"] == 5461
    staying = [node for node in nodes if node is not leaving]
    assert_gone(staying, leaving_id)
    assert client_keys(all_keys(staying)) == expected
    refused = [(entry[b"reason"], entry[b"object"]) for entry in leaving.call("ACL", "LOG")]
    assert refused == [(b"command", b"config|get")]
    assert all(node.call("ACL", "LOG") == [] for node in staying)


def test_a_removed_master_joins_again_at_once(cluster3, fresh_nodes):
    """Every node bans a forgotten id for 60 s, and Redis 8.0 then drops even the node a MEET leads to: the removal
    gives the node a new id, so adding it again right after the removal works."""
    nodes = cluster3
    extra = fresh_nodes(1)[0]
    joins = dict(seed(nodes), node=extra.address, role="master", rebalance=True)
    ok(node_task(joins))
    first_id = extra.node_id()
    assert slot_counts(nodes[0])[first_id] == 4096
    removal, rejoin = node_tasks(dict(seed(nodes), node=extra.address, state="absent"), dict(joins, wait_timeout=20))
    assert ok(removal)["changed"] and ok(rejoin)["changed"], rejoin.get("msg")
    assert extra.node_id() != first_id and first_id not in nodes[0].cluster_nodes()
    assert slot_counts(nodes[0])[extra.node_id()] == 4096
    assert_healthy(nodes[0])


def test_remove_dead_master_whose_replica_took_over(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 5000)
    dead = a_master_besides(nodes)
    promoted, dead_id = kill_master_and_wait_failover(nodes, dead)
    assert all_keys(live(nodes)) == expected
    task = dict(seed(nodes), node=dead_id[:10], state="absent")
    result, again = node_tasks(task, task)
    assert ok(result)["changed"]
    assert_gone(nodes, dead_id)
    assert promoted.call("ROLE")[0] == b"master"
    assert all_keys(live(nodes)) == expected
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


def test_remove_dead_replica_by_id(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    # A second replica for one master, so that master keeps one (min_replicas 1) once the dead one is gone.
    master = a_master_besides(nodes)
    spare = fresh_nodes(1)[0]
    nodes[0].call("CLUSTER", "MEET", "127.0.0.1", spare.port, spare.bus_port)
    wait_for(lambda: len(cluster_nodes_fields(spare)) == 7, message="the spare to learn every node")
    spare.call("CLUSTER", "REPLICATE", master.node_id())
    wait_for(lambda: link_up(spare) and all(spare.node_id() in node.cluster_nodes() for node in nodes),
             message="the spare replica's link")
    everyone = list(nodes) + [spare]
    spare_id = kill_and_wait_flagged(everyone, spare)
    task = dict(seed(nodes), node=spare_id, state="absent")
    result, again = node_tasks(task, task)
    assert ok(result)["changed"]
    assert_gone(everyone, spare_id)
    assert len(replicas_of(nodes, master)) == 1
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


# --- replace -----------------------------------------------------------------------------------------------------


def test_replace_a_live_master(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 10000)
    old = a_master_besides(nodes)
    old_id = old.node_id()
    (its_replica,) = replicas_of(nodes, old)
    held, ranges = old.call("DBSIZE"), ranges_of(nodes[0], old_id)
    new = fresh_nodes(1)[0]
    everyone = list(nodes) + [new]
    task = dict(seed(nodes), node=new.address, replace=old.address)
    reset_stats_replicated(everyone)
    planned = ok(node_task(task, check=True))
    assert planned["changed"] and planned["plan"]
    assert cluster_writes(everyone) == [] and len(cluster_nodes_fields(new)) == 1
    result, again = node_tasks(dict(task, expect_state_id=planned["state_id"]), task)
    assert ok(result)["changed"]
    # The new node took the old one's place: its slots and keys, without a slot moving.
    assert new.call("ROLE")[0] == b"master" and ranges_of(nodes[0], new.node_id()) == ranges
    assert new.call("DBSIZE") == held and result.get("slots_moved", 0) == 0
    staying = [node for node in everyone if node is not old]
    assert_gone(staying, old_id)
    assert_reset(old)
    wait_for(lambda: master_of(its_replica) == new.node_id() and link_up(its_replica),
             message="the old master's replica to follow the new one")
    assert all_keys(staying) == expected
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


def test_replace_a_dead_master_after_its_replica_took_over(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 5000)
    dead = a_master_besides(nodes)
    ranges = ranges_of(nodes[0], dead.node_id())
    promoted, dead_id = kill_master_and_wait_failover(nodes, dead)
    new = fresh_nodes(1)[0]
    everyone = list(nodes) + [new]
    task = dict(seed(nodes), node=new.address, replace=dead_id)
    result, again = node_tasks(task, task)
    assert ok(result)["changed"]
    assert_gone(everyone, dead_id)
    # The new node is in the dead master's shard, beside the replica that took over; the shard's slots stayed.
    new_id, promoted_id = new.node_id(), promoted.node_id()
    assert master_of(new) == promoted_id or master_of(promoted) == new_id
    shard_master = promoted if master_of(new) == promoted_id else new
    assert ranges_of(nodes[0], shard_master.node_id()) == ranges
    wait_for(lambda: link_up(new if shard_master is promoted else promoted), message="the shard's replica link")
    assert all_keys(live(everyone)) == expected
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


def test_replace_a_replica(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    master = a_master_besides(nodes)
    (old,) = replicas_of(nodes, master)
    old_id = old.node_id()
    new = fresh_nodes(1)[0]
    everyone = list(nodes) + [new]
    task = dict(seed(nodes), node=new.address, replace=old.address)
    result, again = node_tasks(task, task)
    assert ok(result)["changed"]
    assert new.call("ROLE")[0] == b"slave" and master_of(new) == master.node_id() and link_up(new)
    staying = [node for node in everyone if node is not old]
    assert_gone(staying, old_id)
    assert_reset(old)
    assert replicas_of(staying, master) == [new]
    assert all_keys(staying) == expected
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False


# --- refusals ----------------------------------------------------------------------------------------------------


def one_master_cluster(node) -> None:
    """node alone serves every slot."""
    node.call("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_for(lambda: cluster_ok(node), message="a one-node cluster")


def test_refusals_change_nothing(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    holding, paired, partner, alone, empty = fresh_nodes(5)
    # A node that holds a key and serves no slot (as one a cluster dropped), knowing nobody.
    one_master_cluster(holding)
    holding.call("SET", "left-behind", "1")
    holding.call("CLUSTER", "DELSLOTSRANGE", 0, 16383)
    # A node that belongs to another cluster.
    paired.call("CLUSTER", "MEET", "127.0.0.1", partner.port, partner.bus_port)
    wait_for(lambda: len(cluster_nodes_fields(paired)) == 2, message="the pair to meet")
    # The last master of its own cluster.
    one_master_cluster(alone)
    replica = replicas_of(nodes, a_master_besides(nodes))[0]
    nowhere = "127.0.0.1:%d" % free_ports(1)[0]
    everyone = list(nodes) + [holding, paired, partner, alone, empty]
    reset_stats_replicated(everyone)
    (keys, foreign, last, below, unknown_master, unknown_old, unreachable, stale, conflicting) = node_tasks(
        dict(seed(nodes), node=holding.address),
        dict(seed(nodes), node=paired.address),
        dict(login_host="127.0.0.1", login_port=alone.port, node=alone.address, state="absent"),
        dict(seed(nodes), node=replica.address, state="absent"),
        dict(seed(nodes), node=empty.address, role="replica", master="f" * 40),
        dict(seed(nodes), node=empty.address, replace="e" * 40),
        dict(seed(nodes), node=nowhere),
        dict(seed(nodes), node=empty.address, expect_state_id="0" * 16),
        dict(seed(nodes), node=empty.address, state="absent", rebalance=True),
    )
    refused(keys, holding.address)
    refused(foreign, paired.address)
    refused(last, alone.address)
    assert "force" in refused(below, replica.address, "min_replicas")
    refused(unknown_master, "master", "f" * 8)
    refused(unknown_old, "replace", "e" * 8)
    refused(unreachable, nowhere)
    assert "review the new plan in check mode" in refused(stale, "expect_state_id", "0" * 16)
    refused(conflicting, "rebalance", "state absent")
    assert cluster_writes(everyone) == []
    assert len(cluster_nodes_fields(nodes[0])) == 6 and holding.call("DBSIZE") == 1
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])
    # force takes the replica out all the same.
    replica_id = replica.node_id()
    forced, again = node_tasks(*[dict(seed(nodes), node=replica.address, state="absent", force=True)] * 2)
    assert ok(forced)["changed"]
    assert_gone([node for node in nodes if node is not replica], replica_id)
    assert_reset(replica)
    assert ok(again)["changed"] is False


def test_draining_into_too_little_memory_is_refused(cluster3):
    nodes = cluster3
    expected = write_keys(nodes, 30000, size=100)
    leaving = a_master_besides(nodes)
    for node in masters(nodes):
        if node is not leaving:
            used = node.client().info("memory")["used_memory"]
            node.call("CONFIG", "SET", "maxmemory", used + 256 * 1024)
    reset_stats_replicated(nodes)
    result = node_task(dict(seed(nodes), node=leaving.address, state="absent"))
    assert "maxmemory" in refused(result, leaving.address)
    assert cluster_writes(nodes) == []
    assert all_keys(nodes) == expected
    assert slot_counts(nodes[0])[leaving.node_id()] > 0


def test_dead_master_without_a_replica_needs_allow_data_loss(cluster3):
    nodes = cluster3
    expected = write_keys(nodes, 3000)
    dead = a_master_besides(nodes)
    lost = set(all_keys([dead]))
    dead_id = kill_and_wait_flagged(nodes, dead)
    task = dict(seed(nodes), node=dead_id, state="absent")
    reset_stats(live(nodes))
    message = refused(node_task(task), "allow_data_loss")
    assert dead.address in message or dead_id[:8] in message, message
    assert cluster_writes(live(nodes)) == []
    assert known_by(nodes, dead_id) == [node.address for node in live(nodes)]
    # With consent: the dead master is forgotten and its slots served again, empty; every other key stays.
    result, again = node_tasks(dict(task, allow_data_loss=True), dict(task, allow_data_loss=True))
    assert ok(result)["changed"]
    assert_gone(nodes, dead_id)
    assert sum(slot_counts(nodes[0]).values()) == 16384
    assert all_keys(live(nodes)) == {key: value for key, value in expected.items() if key not in lost}
    assert_healthy(nodes[0])
    assert ok(again)["changed"] is False
