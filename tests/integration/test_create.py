# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_create through ansible-playbook on real nodes, judged by redis-cli --cluster check."""

from __future__ import annotations

from playbook_runs import run_module, run_tasks
from cluster_checks import (
    assert_healthy, cluster_nodes_fields, cluster_writes, own_ranges, raw, reset_stats, wait_for,
)
from redis_harness import free_ports

MODULE = "redis_cluster_create"


def topology(node) -> tuple:
    """({master id: [ranges]}, {replica id: master id}) as node sees it."""
    masters, replicas = {}, {}
    for fields in cluster_nodes_fields(node):
        if "slave" in fields[2]:
            replicas[fields[0]] = fields[3]
        else:
            masters[fields[0]] = own_ranges(fields)
    return masters, replicas


def assert_even_contiguous(masters: dict, count: int) -> None:
    assert len(masters) == count
    sizes = [sum(last - first + 1 for first, last in ranges) for ranges in masters.values()]
    assert all(len(ranges) == 1 for ranges in masters.values()), masters
    assert sum(sizes) == 16384 and max(sizes) - min(sizes) <= 1


def unconfigured(nodes) -> bool:
    return all(b"cluster_known_nodes:1\r" in node.call("CLUSTER", "INFO") for node in nodes)


def test_six_nodes_check_mode_then_create_then_idempotent(fresh_nodes):
    # Redis' default first-sync delay (the harness sets none, for speed).
    nodes = fresh_nodes(6, extra_args=("--repl-diskless-sync-delay", "5"))
    reset_stats(nodes)
    checked = run_module(MODULE, {"nodes": nodes.addresses}, check=True)
    assert checked["changed"] is True and not checked.get("failed"), checked.get("msg")
    assert any("add 5461 slot(s) 0-5460" in step for step in checked["plan"])
    assert sum("replicate" in step for step in checked["plan"]) == 3
    assert cluster_writes(nodes) == [] and unconfigured(nodes)

    created = run_module(MODULE, {"nodes": nodes.addresses})
    assert created["changed"] is True and not created.get("failed"), created.get("msg")
    assert_healthy(nodes[0])
    masters, replicas = topology(nodes[3])
    assert_even_contiguous(masters, 3)
    assert sorted(replicas.values()) == sorted(masters)
    assert created["after"]["slots_covered"] == 16384 and len(created["after"]["masters"]) == 3
    # Every replica is through its first sync (diskless, 5 s after it asked by default) when create returns: it
    # could take over at once.
    assert sum("has synced with" in step for step in created["plan"]) == 3
    links = {node.address: node.client().info("replication") for node in nodes}
    assert sorted((info["master_link_status"], info["master_sync_in_progress"]) for info in links.values()
                  if info["role"] == "slave") == [("up", 0)] * 3, links
    # Distinct config epochs: no collision left for Redis to resolve.
    epochs = [int(fields[6]) for fields in cluster_nodes_fields(nodes[0]) if "master" in fields[2]]
    assert len(set(epochs)) == 3

    again = run_module(MODULE, {"nodes": nodes.addresses})
    assert again["changed"] is False and again["plan"] == [] and again["state_id"]


def test_nine_nodes_two_replicas_each(fresh_nodes):
    nodes = fresh_nodes(9)
    result = run_module(MODULE, {"nodes": nodes.addresses, "replicas": 2})
    assert result["changed"] and not result.get("failed"), result.get("msg")
    assert_healthy(nodes[0])
    masters, replicas = topology(nodes[8])
    assert_even_contiguous(masters, 3)
    assert sorted(list(replicas.values()).count(master) for master in masters) == [2, 2, 2]


def test_twelve_nodes_over_three_zones(fresh_nodes):
    nodes = fresh_nodes(12)
    zones = {node.port: "zone-%s" % "abc"[index % 3] for index, node in enumerate(nodes)}
    specs = [{"host": "127.0.0.1", "port": node.port, "zone": zones[node.port]} for node in nodes]
    result = run_module(MODULE, {"nodes": specs, "replicas": 1})
    assert result["changed"] and not result.get("failed"), result.get("msg")
    assert_healthy(nodes[0])
    port_of = {node.node_id(): node.port for node in nodes}
    masters, replicas = topology(nodes[0])
    assert_even_contiguous(masters, 6)
    for replica, master in replicas.items():
        assert zones[port_of[replica]] != zones[port_of[master]], "replica shares its master's zone"
    # Masters spread: no zone holds a majority.
    assert max(list(zones[port_of[m]] for m in masters).count(z) for z in set(zones.values())) == 2
    # All nodes share one host (127.0.0.1): that goal cannot be met and is said so; zones are met.
    assert any("host" in warning for warning in result["placement_warnings"])
    assert not any("zone" in warning for warning in result["placement_warnings"])


def test_half_made_cluster_is_finished(fresh_nodes):
    nodes = fresh_nodes(6)
    # An interrupted run: two masters got their slots and met, the rest never happened.
    raw(nodes[0], ("CLUSTER", "ADDSLOTSRANGE", 0, 5460))
    raw(nodes[1], ("CLUSTER", "ADDSLOTSRANGE", 5461, 10922))
    raw(nodes[1], ("CLUSTER", "MEET", "127.0.0.1", nodes[0].port, nodes[0].bus_port))
    run = run_tasks([{"redisops.cluster.redis_cluster_create": {"nodes": nodes.addresses}}] * 2)
    first, second = run.results
    assert first["changed"] and not first.get("failed"), first.get("msg")
    assert not any("0-5460" in step or "5461-10922" in step for step in first["plan"])
    assert_healthy(nodes[2])
    masters, replicas = topology(nodes[5])
    assert_even_contiguous(masters, 3)
    assert [(0, 5460)] in masters.values() and [(5461, 10922)] in masters.values()
    assert len(replicas) == 3
    assert second["changed"] is False


def test_refusals_change_nothing(fresh_nodes):
    nodes = fresh_nodes(8)
    addresses = nodes.addresses
    # A node with a key: serve a slot just long enough to write it.
    raw(nodes[2], ("CONFIG", "SET", "cluster-require-full-coverage", "no"), ("CLUSTER", "ADDSLOTS", 15495))
    wait_for(lambda: b"cluster_state:ok" in nodes[2].call("CLUSTER", "INFO"), message="a one-slot node to accept writes")
    raw(nodes[2], ("SET", "a", "1"), ("CLUSTER", "DELSLOTS", 15495),
        ("CONFIG", "SET", "cluster-require-full-coverage", "yes"))
    dead = "127.0.0.1:%d" % free_ports(1)[0]
    raw(nodes[6], ("CLUSTER", "MEET", "127.0.0.1", nodes[5].port, nodes[5].bus_port))
    reset_stats(nodes)
    without_keys = [addresses[i] for i in (0, 1, 3, 4, 5, 7)]
    run = run_tasks([
        {"redisops.cluster.redis_cluster_create": {"nodes": addresses[:6]}},
        {"redisops.cluster.redis_cluster_create": {"nodes": [addresses[i] for i in (0, 1, 3, 4, 7)] + [dead]}},
        {"redisops.cluster.redis_cluster_create": {"nodes": without_keys}},
        {"redisops.cluster.redis_cluster_create": {"nodes": without_keys[:4]}},
        {"redisops.cluster.redis_cluster_create": {"nodes": without_keys, "replicas": -1}},
        {"redisops.cluster.redis_cluster_create": {}},
    ])
    has_keys, unreachable, stranger, too_few, negative, no_nodes = run.results
    assert has_keys["failed"] and nodes[2].address in has_keys["msg"] and "1 key(s)" in has_keys["msg"]
    assert unreachable["failed"] and dead in unreachable["msg"] and "must be up" in unreachable["msg"]
    assert stranger["failed"] and nodes[5].address in stranger["msg"] and nodes[6].address in stranger["msg"]
    assert too_few["failed"] and "need at least 6" in too_few["msg"]
    assert negative["failed"] and "replicas must be 0 or more" in negative["msg"]
    assert no_nodes["failed"] and no_nodes["msg"].startswith("nodes:")
    assert "Traceback" not in run.output
    assert cluster_writes(nodes) == []


def test_password_protected_nodes(fresh_nodes):
    secret = "create-secret-value"
    nodes = fresh_nodes(6, password=secret)
    run = run_tasks([{"redisops.cluster.redis_cluster_create": {"nodes": nodes.addresses}}],
                    env={"REDIS_CLUSTER_PASSWORD": secret}, verbosity=3)
    assert run.result["changed"] and not run.result.get("failed"), run.result.get("msg")
    assert secret not in run.output and secret not in str(run.results)
    masters, replicas = topology(nodes[0])
    assert_even_contiguous(masters, 3)
    assert len(replicas) == 3
