# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_failover on real clusters: every mode, the best replica, refusals, check mode, placement restore."""

from __future__ import annotations

import re

from playbook_runs import run_module, run_tasks
from cluster_checks import (
    all_keys, assert_clients_kept_working, assert_healthy, client_keys, clients_writing, cluster_nodes_fields,
    cluster_writes, command_counts, masters, reset_stats, seed, wait_for, wait_replicated, write_keys,
)
from redis_harness import wait_converged
from test_rebalance import ok

MODULE = "redis_cluster_failover"


def role(node) -> bytes:
    return node.call("ROLE")[0]


def shards(nodes) -> list:
    """(master, its replica) of a 3 + 3 cluster, in the masters' port order."""
    by_port = {node.port: node for node in nodes}
    pairs = []
    for node in nodes:
        info = node.client().info("replication")
        if info["role"] == "slave":
            pairs.append((by_port[info["master_port"]], node))
    return sorted(pairs, key=lambda pair: pair[0].port)


def roles(nodes) -> dict:
    """port -> (role, the port it replicates or 0) of the nodes that run."""
    found = {}
    for node in nodes:
        if node.process.poll() is None:
            info = node.client().info("replication")
            found[node.port] = (info["role"], info.get("master_port", 0))
    return found


def link_up(node) -> bool:
    return node.client().info("replication").get("master_link_status") == "up"


def failover_calls(nodes) -> int:
    """CLUSTER FAILOVER commands the nodes received since CONFIG RESETSTAT (where a replica applying its master's
    stream counts writes too)."""
    return sum(command_counts(node).get("cluster|failover", 0) for node in nodes)


def refused(result: dict, pattern: str) -> None:
    assert result.get("failed") and re.search(pattern, result["msg"]), result.get("msg")


def test_a_named_replica_is_promoted_while_clients_write(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 5000)
    master, replica = shards(nodes)[0]
    reset_stats(nodes)
    planned = ok(run_module(MODULE, dict(seed(nodes), node=replica.address), check=True))
    # Check mode: the plan, and not one write.
    assert planned["changed"] and cluster_writes(nodes) == [] and role(replica) == b"slave"
    (failover,) = planned["failovers"]
    assert (failover["replica"], failover["master"], failover["mode"]) == (replica.address, master.address, "default")
    described = "%s (%s): fail over from master %s" % (replica.address, replica.node_id()[:8], master.address)
    assert planned["plan"][0].startswith(described)
    with clients_writing(nodes) as writers:
        result = ok(run_module(MODULE, dict(seed(nodes), node=replica.address, expect_state_id=planned["state_id"])))
    # The same failover as reviewed (the lag in its words is read again when it runs), then the wait.
    assert result["changed"] and len(result["completed"]) == 2
    assert [(f["replica"], f["master"]) for f in result["failovers"]] == [(replica.address, master.address)]
    assert role(replica) == b"master" and role(master) == b"slave"
    stored = all_keys(nodes)
    assert client_keys(stored) == expected
    assert_clients_kept_working(writers, stored)
    assert_healthy(nodes[0])
    before = roles(nodes)
    again = ok(run_module(MODULE, dict(seed(nodes), node=replica.address)))
    assert again["changed"] is False and again["plan"] == []
    stale = run_module(MODULE, dict(seed(nodes), node=master.address, expect_state_id=planned["state_id"]))
    refused(stale, "changed since the plan was approved")
    assert roles(nodes) == before


def test_the_best_replica_of_a_master_is_the_one_whose_promotion_crowds_no_zone(cluster6, fresh_nodes):
    nodes = cluster6
    (master, replica), (second, second_replica), (third, third_replica) = shards(nodes)
    extra = fresh_nodes(1)[0]
    nodes[0].call("CLUSTER", "MEET", "127.0.0.1", extra.port, extra.bus_port)
    wait_for(lambda: all(extra.node_id() in n.cluster_nodes() for n in nodes) and master.node_id() in extra.cluster_nodes(),
             message="the new node known everywhere")
    extra.call("CLUSTER", "REPLICATE", master.node_id())
    everyone = list(nodes) + [extra]
    wait_for(lambda: link_up(extra), message="the new replica synced")
    wait_converged(everyone)
    # The master's two replicas lag alike: the one with the smaller address would win a tie, but it is in zone b,
    # where another master already is; the other one is alone in zone d.
    crowding, alone = sorted((replica, extra), key=lambda node: node.address)
    zones = {master: "a", second: "b", third: "c", crowding: "b", alone: "d", second_replica: "c",
             third_replica: "a"}
    listed = [dict(host="127.0.0.1", port=node.port, zone=zone) for node, zone in zones.items()]
    task = dict(nodes=listed, master=master.node_id()[:10])
    planned = ok(run_module(MODULE, task, check=True))
    assert [f["replica"] for f in planned["failovers"]] == [alone.address]
    # Every node is on 127.0.0.1, one host holding all three masters: that part of the cost stays.
    assert planned["placement"]["after"] == planned["placement"]["before"] == {
        "replicas_sharing_a_domain": 4, "masters_over_domain_cap": 2}
    result = ok(run_module(MODULE, dict(task, expect_state_id=planned["state_id"])))
    assert result["changed"] and role(alone) == b"master" and role(master) == b"slave"
    # Its failover happened: the master is a replica now.
    assert ok(run_module(MODULE, task))["changed"] is False
    assert_healthy(nodes[0])


def dead_master_shard(nodes, keys: int = 2000):
    """A shard whose master is killed once its replica holds every key; the replica does not fail over by itself.
    (master, replica, the keys written)."""
    expected = write_keys(nodes, keys)
    master, replica = shards(nodes)[0]
    replica.call("CONFIG", "SET", "cluster-replica-no-failover", "yes")
    wait_replicated(master, at_least=1)
    master.kill()
    others = [node for node in nodes if node is not master]
    wait_for(lambda: all(b"cluster_state:fail" in node.call("CLUSTER", "INFO") for node in others),
             message="the cluster to notice the dead master")
    return master, replica, expected


def test_force_promotes_the_replica_of_a_killed_master(cluster6):
    nodes = cluster6
    master, replica, expected = dead_master_shard(nodes)
    living = [node for node in nodes if node is not master]
    runs = run_tasks([{"redisops.cluster." + MODULE: dict(seed(living), master=master.address)},
                      {"redisops.cluster." + MODULE: dict(seed(living), node=replica.address, mode="force")},
                      {"redisops.cluster." + MODULE: dict(seed(living), node=replica.address, mode="force")},
                      {"redisops.cluster." + MODULE: dict(seed(living), master=master.address, mode="force")}]).results
    default, forced, again, by_master = runs
    refused(default, r"%s .* cannot be reached .* use mode force" % re.escape(master.address))
    assert default["changed"] is False
    assert ok(forced)["changed"] and forced["failovers"][0]["mode"] == "force"
    # Only the replica answers ROLE; then every living node agrees again.
    assert "check ROLE on the replica (its master cannot be reached)" in forced["plan"][0]
    assert forced["completed"][-1] == "wait until every node agrees on roles and slots"
    assert role(replica) == b"master"
    assert all(b"cluster_state:ok" in node.call("CLUSTER", "INFO") for node in living)
    assert all_keys(living) == expected
    # Idempotent, by the replica and by the dead master, which serves no slot any more.
    assert ok(again)["changed"] is False and ok(by_master)["changed"] is False


def test_takeover_promotes_replicas_without_a_majority_and_the_paused_masters_rejoin_as_replicas(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    (first, first_replica), (second, second_replica), _rest = shards(nodes)
    for node in (first_replica, second_replica):
        node.call("CONFIG", "SET", "cluster-replica-no-failover", "yes")
    wait_replicated(first, at_least=1)
    wait_replicated(second, at_least=1)
    first.pause()
    second.pause()
    try:
        living = [node for node in nodes if node not in (first, second)]
        # One master of three is left: none of the others can be flagged fail (that takes a majority), and the
        # nodes fall to cluster_state:fail.
        wait_for(lambda: all(b"cluster_state:fail" in node.call("CLUSTER", "INFO") for node in living),
                 message="the minority to see the cluster fail")
        quick = dict(seed(living), command_timeout=1.0)
        runs = run_tasks([
            {"redisops.cluster." + MODULE: dict(quick, node=first_replica.address, mode="force", wait_timeout=3)},
            {"redisops.cluster." + MODULE: dict(quick, node=first_replica.address, mode="takeover")},
            {"redisops.cluster." + MODULE: dict(quick, master=second.address, mode="takeover")},
            {"redisops.cluster." + MODULE: dict(quick, node=first_replica.address, mode="takeover")},
        ]).results
        forced, taken, second_taken, again = runs
        # Force needs a majority of masters to vote: with one master left, the roles never switch.
        refused(forced, "the roles have not switched")
        assert forced["changed"] is True
        assert ok(taken)["changed"] and taken["failovers"][0]["mode"] == "takeover"
        # The other shard is still down when the first takes over: no wait for a cluster that cannot settle yet.
        assert [w for w in taken["placement_warnings"] if second.address in w and "stays fail" in w]
        assert len(taken["plan"]) == 1 and taken["completed"] == taken["plan"]
        assert ok(second_taken)["changed"] and second_taken["failovers"][0]["replica"] == second_replica.address
        assert second_taken["completed"][-1] == "wait until every node agrees on roles and slots"
        assert ok(again)["changed"] is False
        assert role(first_replica) == b"master" and role(second_replica) == b"master"
    finally:
        first.resume()
        second.resume()
    # Back, the old masters learn they lost their slots to a newer epoch and follow their replicas.
    wait_for(lambda: role(first) == b"slave" and role(second) == b"slave", message="the old masters to follow")
    wait_converged(nodes)
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])


def test_every_refusal_leaves_the_cluster_untouched(cluster6, fresh_nodes):
    nodes = cluster6
    (master, replica), (second, second_replica), _rest = shards(nodes)
    empty = fresh_nodes(1)[0]
    nodes[0].call("CLUSTER", "MEET", "127.0.0.1", empty.port, empty.bus_port)
    everyone = list(nodes) + [empty]
    wait_converged(everyone)
    before = roles(everyone)
    reset_stats(everyone)
    tasks = [
        dict(seed(nodes), node="127.0.0.1:1"),
        dict(seed(nodes), node=empty.address),
        dict(seed(nodes), node=replica.address, master=master.address),
        dict(seed(nodes), node=replica.address, placement="restore"),
        dict(seed(nodes), placement="restore", mode="force"),
        dict(seed(nodes)),
        dict(seed(nodes), node=replica.address, max_lag=-1),
        dict(seed(nodes), node=replica.address, mode="force"),
        dict(seed(nodes), node=replica.address, mode="takeover"),
        dict(seed(nodes), node=replica.address, expect_state_id="0" * 16),
        # Already done: a master serving slots as node, a replica as master.
        dict(seed(nodes), node=master.address),
        dict(seed(nodes), master=replica.address),
    ]
    results = run_tasks([{"redisops.cluster." + MODULE: task} for task in tasks]).results
    expected = [
        r"^node: '127\.0\.0\.1:1' names no node of the cluster",
        r"node: %s .* master that serves no slot" % re.escape(empty.address),
        r"mutually exclusive: node\|master",
        r"placement restore chooses the shards .* leave out node",
        r"placement restore plans default failovers only, .* leave out mode force",
        r"give node .*, master .*, or placement: restore",
        r"max_lag must be 0 or more",
        r"a default failover of %s .* can go ahead .* use mode default" % re.escape(replica.address),
        r"use mode default, which loses no write; mode takeover",
        r"changed since the plan was approved",
    ]
    for result, pattern in zip(results, expected):
        refused(result, pattern)
    assert [result["changed"] for result in results[len(expected):]] == [False, False]
    assert cluster_writes(everyone) == [] and roles(everyone) == before

    # A replica whose link to its master is down (it cannot authenticate): refused in default mode, by node and by
    # master (its only replica).
    replica.call("CONFIG", "SET", "masterauth", "not-the-password")
    master.call("CLIENT", "KILL", "TYPE", "replica")
    wait_for(lambda: not link_up(replica), message="the replica's link down")
    reset_stats(everyone)
    down = run_tasks([{"redisops.cluster." + MODULE: dict(seed(nodes), node=replica.address)},
                      {"redisops.cluster." + MODULE: dict(seed(nodes), master=master.address)}]).results
    refused(down[0], r"%s .* has master_link_status:down; .* wait until it has synced" % re.escape(replica.address))
    refused(down[1], r"no replica of %s .* can take over in a default failover: .*master_link_status:down"
            % re.escape(master.address))
    assert cluster_writes(everyone) == [] and roles(everyone) == before
    replica.call("CONFIG", "SET", "masterauth", "")
    wait_for(lambda: link_up(replica), message="the replica's link up again")

    # A replica that has stopped applying its master's stream (CLIENT PAUSE WRITE holds it back) falls behind.
    second_replica.call("CLIENT", "PAUSE", 60000, "WRITE")
    try:
        write_keys(nodes, 500, size=100)
        reset_stats(everyone)
        lagging = run_module(MODULE, dict(seed(nodes), node=second_replica.address, max_lag=1000))
    finally:
        second_replica.call("CLIENT", "UNPAUSE")
    refused(lagging, r"%s .* is \d+ bytes behind its master, more than max_lag 1000" % re.escape(second_replica.address))
    assert failover_calls(everyone) == 0 and roles(everyone) == before
    assert_healthy(nodes[0])


def test_placement_restore_fails_back_where_a_failover_left_two_masters_in_one_zone(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    (first, first_replica), (second, second_replica), (third, third_replica) = shards(nodes)
    zones = {first: "a", second: "b", third: "c", first_replica: "b", second_replica: "c", third_replica: "a"}
    listed = [dict(host="127.0.0.1", port=node.port, zone=zone) for node, zone in zones.items()]
    restore = dict(nodes=listed, placement="restore")
    assert ok(run_module(MODULE, restore))["changed"] is False
    # Maintenance of zone a's master: its replica in zone b takes over, and zone b holds two masters of three.
    ok(run_module(MODULE, dict(nodes=listed, node=first_replica.address)))
    wait_for(lambda: link_up(first), message="the old master synced as a replica")
    reset_stats(nodes)
    planned = ok(run_module(MODULE, restore, check=True))
    assert cluster_writes(nodes) == []
    assert [(f["replica"], f["master"]) for f in planned["failovers"]] == [(first.address, first_replica.address)]
    # Zone b's second master is the one beyond the cap (the host 127.0.0.1, holding all three, adds 2 to both).
    assert (planned["placement"]["before"]["masters_over_domain_cap"],
            planned["placement"]["after"]["masters_over_domain_cap"]) == (3, 2)
    assert role(first) == b"slave"
    result = ok(run_module(MODULE, dict(restore, expect_state_id=planned["state_id"])))
    assert result["changed"] and role(first) == b"master" and role(first_replica) == b"slave"
    assert sorted(node.port for node in masters(nodes)) == sorted(node.port for node in (first, second, third))
    wait_for(lambda: link_up(first_replica), message="the replica synced again")
    assert ok(run_module(MODULE, restore))["changed"] is False
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])
    # Every node agrees: each node lists the three masters with slots.
    assert all(sum(1 for f in cluster_nodes_fields(node) if "master" in f[2] and len(f) > 8) == 3 for node in nodes)
