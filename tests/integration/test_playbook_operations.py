# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbooks fix, rebalance, scale_out, scale_in and replace_node, run as ansible-playbook redisops.cluster.NAME
over one cluster in file order: each refuses bad input before any write, changes nothing in check mode, does its
job, and changes nothing when run again. scale_out deploys its new hosts with the roles (plain processes), and
scale_in removes and stops them again.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
from playbook_runs import local_inventory, run_collection_playbook, run_module
from cluster_checks import (
    all_keys, assert_healthy, masters, owner_id, raw, replication_settled, wait_for, write_keys,
)
from redis.crc import key_slot
from redis_harness import RedisNode, RedisNodes, form_cluster
from role_hosts import DeployedNode
from test_node import master_of
from test_rebalance import slot_counts
from test_roles_local import BUS_OFFSET, free_instance_ports

ZONES = ("a", "b", "c")
KEYS = 3000


class Site:
    """A 3 masters + 3 replicas cluster over three inventory hosts (zones a, b, c), the keys written to it, and the
    hosts added later (deployed by scale_out, or a spare node for replace_node)."""

    def __init__(self, nodes: RedisNodes, spare: RedisNode, root: str):
        self.nodes = list(nodes)
        self.spare = spare
        self.root = root
        # The ports of the instances scale_out deploys on host-d and host-e.
        self.new_ports = free_instance_ports(2)
        self.expected = write_keys(self.nodes, KEYS)
        self.hosts = {}
        for index, node in enumerate(self.nodes):
            zone = ZONES[index % len(ZONES)]
            host = self.hosts.setdefault("host-" + zone, {"redis_cluster_address": node.host, "redis_cluster_zone": zone,
                                                          "redis_node_ports": []})
            host["redis_node_ports"].append(node.port)

    def live(self) -> list:
        return [node for node in self.nodes if node.process.poll() is None]

    def inventory(self, **groups) -> dict:
        """The cluster's hosts as the group redis_cluster, plus groups of further hosts by name."""
        return local_inventory(dict({"redis_cluster": self.hosts}, **groups))

    def deployed_host(self, name: str, zone: str, port: int, **host_vars) -> dict:
        """Host variables of a host whose instance the roles run as a plain process, under root/name."""
        base = os.path.join(self.root, name)
        return dict({
            "redis_cluster_address": "127.0.0.1", "redis_cluster_zone": zone, "redis_node_ports": [port],
            "redis_node_supervisor": "none", "redis_node_manage_package": False, "redis_node_bind": "127.0.0.1",
            "redis_node_cluster_node_timeout": 2000, "redis_node_bus_port_offset": BUS_OFFSET,
            "redis_node_appendonly": False, "redis_node_save": "",
            "redis_node_data_dir": os.path.join(base, "data"), "redis_node_conf_dir": os.path.join(base, "conf"),
            "redis_node_log_dir": os.path.join(base, "log"), "redis_node_run_dir": os.path.join(base, "run"),
            "redis_cluster_agent_manage_packages": False, "redis_cluster_agent_python": sys.executable,
            "redis_cluster_agent_lib_dir": os.path.join(base, "agent"),
            "redis_cluster_agent_conf_dir": os.path.join(base, "agent-conf"),
            "redis_cluster_agent_facts_dir": os.path.join(base, "facts.d"),
        }, **host_vars)

    def stop_deployed(self) -> None:
        """Kill what the roles started, by the pid files (the cleanup when a test failed before scale_in)."""
        for pid_file in _pid_files(self.root):
            try:
                with open(pid_file) as handle:
                    os.kill(int(handle.read()), 9)
            except (OSError, ValueError):
                continue


def _pid_files(root: str) -> list:
    return [os.path.join(directory, name) for directory, _dirs, files in os.walk(root)
            for name in files if name.endswith(".pid")]


@pytest.fixture(scope="module")
def site():
    root = tempfile.mkdtemp(prefix="redisops-playbooks-")
    nodes = RedisNodes(6)
    spare = None
    try:
        spare = RedisNodes(1)
        form_cluster(nodes.nodes, replicas=1)
        made = Site(nodes, spare[0], root)
        yield made
        made.stop_deployed()
    finally:
        nodes.close()
        if spare:
            spare.close()
        shutil.rmtree(root, ignore_errors=True)


# --- what every case checks ----------------------------------------------------------------------------------------


def topology(nodes) -> dict:
    """Per node, once replication has settled: its CLUSTER NODES lines without the timing fields (ping sent, pong
    received), and its key count."""
    replication_settled(nodes)
    views = {}
    for node in nodes:
        lines = sorted(" ".join(fields[:4] + fields[6:]) for fields in map(str.split, node.cluster_nodes().splitlines()))
        views[node.address] = (lines, node.call("DBSIZE"))
    return views


def run(name: str, inventory: dict, extra_vars=None, check: bool = False):
    """ansible-playbook redisops.cluster.NAME (with the stats it hands on shown); the run, once it succeeded."""
    done = run_collection_playbook(name, inventory, extra_vars=extra_vars, check=check,
                                   env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert done.rc == 0, done.output
    return done


def check_mode_changes_nothing(name: str, inventory: dict, nodes, extra_vars=None):
    """Run NAME in check mode; the run, once every node's view and key count are what they were."""
    before = topology(nodes)
    done = run(name, inventory, extra_vars, check=True)
    assert topology(nodes) == before
    return done


def refused_before_any_write(name: str, inventory: dict, nodes, extra_vars, *words) -> str:
    """Run NAME with bad input: it fails, naming every one of words, and no node's view or key count changed."""
    before = topology(nodes)
    done = run_collection_playbook(name, inventory, extra_vars=extra_vars)
    assert done.rc != 0, done.output
    assert all(word in done.output for word in words), done.output
    assert topology(nodes) == before
    return done.output


def changes_nothing_again(name: str, inventory: dict, extra_vars=None) -> None:
    done = run(name, inventory, extra_vars)
    assert done.recap and all(counts["changed"] == 0 for counts in done.recap.values()), done.output


def assert_keys_kept(site: Site) -> None:
    """Every key written is on the masters with its value, nothing else is, and redis-cli finds nothing wrong."""
    assert all_keys(site.live()) == site.expected
    assert_healthy(site.live()[0])


def shown(output: str, task: str) -> str:
    """The output of one task, from its TASK line to the next."""
    start = output.index("TASK [%s]" % task)
    end = output.find("TASK [", start + 1)
    return output[start:end if end != -1 else None]


# --- fix -----------------------------------------------------------------------------------------------------------


def half_moved_slot(site: Site) -> tuple:
    """A slot with keys left open half-way from its owner to another master: (slot, source, target)."""
    tag = "{half}"
    client_keys = write_keys(site.nodes, 40, prefix=tag)
    site.expected.update(client_keys)
    slot = key_slot(tag.encode())
    source = next(node for node in masters(site.nodes) if node.node_id() == owner_id(site.nodes[0], slot))
    target = next(node for node in masters(site.nodes) if node is not source)
    raw(target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()))
    raw(source, ("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id()))
    half = sorted(client_keys)[:20]
    raw(source, ("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *half))
    return slot, source, target


def test_fix_refuses_bad_input(site):
    refused_before_any_write("fix", site.inventory(), site.nodes, {"redis_cluster_fix_pipeline": 0},
                             "redis_cluster_fix_pipeline must be a number above 0")


def test_fix_finishes_a_half_moved_slot(site):
    slot, source, target = half_moved_slot(site)
    inventory = site.inventory()
    planned = check_mode_changes_nothing("fix", inventory, site.nodes)
    plan = shown(planned.output, "Show the repair plan")
    assert "finish moving open slot %d" % slot in plan and "state_id" in plan, planned.output
    assert "open_slot" in shown(planned.output, "Show the findings before the repair")
    run("fix", inventory)
    assert "[" not in " ".join(line for line in source.cluster_nodes().splitlines() if "myself" in line)
    assert owner_id(site.nodes[0], slot) == target.node_id()
    assert_keys_kept(site)
    changes_nothing_again("fix", inventory)


# --- rebalance -----------------------------------------------------------------------------------------------------


def test_rebalance_refuses_bad_input(site):
    refused_before_any_write("rebalance", site.inventory(), site.nodes,
                             {"redis_cluster_rebalance_weights": {site.nodes[0].address: "heavy"}},
                             "redis_cluster_rebalance_weights must be a mapping")


def test_rebalance_applies_the_reviewed_moves(site):
    giver, taker = masters(site.nodes)[:2]
    resharded = run_module("redis_cluster_reshard", {"login_host": giver.host, "login_port": giver.port,
                                                     "slots": 1500, "to": taker.address, "from": [giver.address]})
    assert resharded["changed"] and not resharded.get("failed"), resharded
    inventory = site.inventory()
    planned = check_mode_changes_nothing("rebalance", inventory, site.nodes)
    moves = shown(planned.output, "Show the moves")
    assert "move " in moves, planned.output
    state_id = moves.split("state_id ")[1].split()[0]
    # An AWX workflow's next job receives the reviewed state_id from these stats.
    assert '"redis_cluster_expect_state_id": "%s"' % state_id in planned.output.split("CUSTOM STATS")[1]
    # The reviewed moves are applied only while the cluster is still the one reviewed.
    applied = run("rebalance", inventory, {"redis_cluster_expect_state_id": state_id})
    assert "slot(s) and" in shown(applied.output, "Show what moved")
    counts = sorted(slot_counts(site.nodes[0]).values())
    assert counts[-1] - counts[0] <= 1, counts
    assert_keys_kept(site)
    refused_before_any_write("rebalance", inventory, site.nodes, {"redis_cluster_expect_state_id": state_id,
                                                                  "redis_cluster_rebalance_threshold": 0},
                             "the cluster changed since the plan was approved")
    changes_nothing_again("rebalance", inventory)


# --- scale_out -----------------------------------------------------------------------------------------------------


def new_hosts(site: Site, **master_vars) -> dict:
    """host-d (a master, zone a) and host-e (a replica, zone b), deployed by the roles on fresh ports."""
    return {"host-d": site.deployed_host("host-d", "a", site.new_ports[0], **master_vars),
            "host-e": site.deployed_host("host-e", "b", site.new_ports[1], redis_cluster_role="replica")}


def test_scale_out_refuses_bad_input(site):
    inventory = site.inventory(redis_cluster_new=new_hosts(site, redis_cluster_role="primary"))
    refused_before_any_write("scale_out", inventory, site.nodes, None, "redis_cluster_role of host-d must be")
    assert not os.path.exists(os.path.join(site.root, "host-e")), "the roles ran despite the refusal"


def test_scale_out_deploys_joins_and_rebalances(site):
    inventory = site.inventory(redis_cluster_new=new_hosts(site))
    planned = check_mode_changes_nothing("scale_out", inventory, site.nodes)
    assert not _pid_files(site.root), "check mode started an instance"
    for port in site.new_ports:
        assert "127.0.0.1:%d does not run yet: it joins once deployed" % port in planned.output, planned.output

    run("scale_out", inventory)
    added = [DeployedNode(port, os.path.join(site.root, name, "run"))
             for name, port in zip(("host-d", "host-e"), site.new_ports)]
    new_master, new_replica = added
    assert new_master.call("ROLE")[0] == b"master" and new_replica.call("ROLE")[0] == b"slave"
    counts = slot_counts(site.nodes[0])
    assert sorted(counts.values()) == [4096] * 4 and counts[new_master.node_id()] == 4096, counts
    # The replica joins after the rebalance: placement gives it to the new master, which serves slots by then and
    # has no replica, in another zone (a) than its own (b).
    assert master_of(new_replica) == new_master.node_id()
    site.nodes += added
    assert_keys_kept(site)
    # The operator then moves the new hosts into the cluster's group.
    site.hosts.update(new_hosts(site))
    changes_nothing_again("scale_out", site.inventory(redis_cluster_new=new_hosts(site)))


# --- scale_in ------------------------------------------------------------------------------------------------------


def test_scale_in_refuses_bad_input(site):
    refused_before_any_write("scale_in", site.inventory(), site.live(), {"redis_cluster_scale_in_nodes": ["host-d"]},
                             "redis_cluster_scale_in_nodes must be a list (or a string) of host:port or node ids")


def test_scale_in_drains_removes_and_stops_a_group(site):
    leaving = {name: site.hosts[name] for name in ("host-d", "host-e")}
    inventory = site.inventory(redis_cluster_leaving=leaving)
    removed = [node for node in site.nodes if isinstance(node, DeployedNode)]
    removed_ids = [node.node_id() for node in removed]
    extra = {"redis_cluster_scale_in_group": "redis_cluster_leaving"}
    planned = check_mode_changes_nothing("scale_in", inventory, site.live(), extra)
    plan = shown(planned.output, "Show the removals")
    assert "move " in plan and "slot(s)" in plan, planned.output
    assert all(node.process.poll() is None for node in removed)

    run("scale_in", inventory, extra)
    # Redis removes its pid file, which the stopping waits for, a moment before it exits.
    wait_for(lambda: all(node.process.poll() is not None for node in removed), timeout=10,
             message="the removed instances to exit")
    assert not _pid_files(site.root)
    staying = site.live()
    assert len(staying) == 6
    assert sorted(slot_counts(staying[0]).values()) == [5461, 5461, 5462]
    assert all(node_id not in node.cluster_nodes() for node in staying for node_id in removed_ids)
    site.nodes = staying
    for name in leaving:
        del site.hosts[name]
    assert_keys_kept(site)
    # The hosts may stay in the inventory a while: a second run finds nothing to remove and nothing to stop.
    changes_nothing_again("scale_in", site.inventory(redis_cluster_leaving=leaving), extra)


# --- replace_node --------------------------------------------------------------------------------------------------


def spare_inventory(site: Site) -> dict:
    return site.inventory(redis_cluster_spare={"host-f": {"redis_cluster_address": site.spare.host,
                                                          "redis_cluster_zone": "a", "redis_cluster_rack": "r1",
                                                          "redis_node_ports": [site.spare.port]}})


def test_replace_node_refuses_bad_input(site):
    refused_before_any_write("replace_node", spare_inventory(site), site.live(),
                             {"redis_cluster_replace_node_old": site.nodes[0].address,
                              "redis_cluster_replace_node_new": "127.0.0.1:1"},
                             "redis_cluster_replace_node_new must be the host:port of an instance")


def test_replace_node_puts_a_spare_in_a_masters_place(site):
    old = masters(site.nodes)[0]
    old_id = old.node_id()
    old_slots = slot_counts(old)[old_id]
    inventory = spare_inventory(site)
    extra = {"redis_cluster_replace_node_old": old.address, "redis_cluster_replace_node_new": site.spare.address}
    planned = check_mode_changes_nothing("replace_node", inventory, site.live() + [site.spare], extra)
    assert "failover" in shown(planned.output, "Show the plan").lower(), planned.output

    run("replace_node", inventory, extra)
    site.nodes = [site.spare if node is old else node for node in site.nodes]
    assert site.spare.call("ROLE")[0] == b"master"
    assert slot_counts(site.spare)[site.spare.node_id()] == old_slots
    assert len(old.cluster_nodes().splitlines()) == 1, "the old node was not reset"
    assert all(old_id not in node.cluster_nodes() for node in site.live() if node is not old)
    assert_keys_kept(site)
    changes_nothing_again("replace_node", inventory, extra)
