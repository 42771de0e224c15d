# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Partitions between test hosts in network namespaces (tests/lib/netns_hosts): a master's host cut off while clients
write (on nodes the tests start, and on instances the roles deployed, with a password), and a host cut off in the
middle of a rebalance; the modules and the reconcile playbook bring the cluster back to full health afterwards.
Figures (printed with -s) go to docs/reliability.md, Partitions."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time

import pytest
import redis
from cluster_checks import (
    all_keys, assert_healthy, cluster_nodes_fields, masters, own_ranges, wait_for, write_keys, Writer,
)
from netns_hosts import HostWriter, NetnsHost, NetnsHosts, unavailable_reason
from playbook_runs import reconcile_decisions, run_collection_playbook, run_module
from redis.crc import key_slot
from redis_harness import RedisNode, RedisNodes, wait_converged
from role_hosts import RoleHosts, RoleInstance

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason="partitions need network namespaces: %s"
                                % unavailable_reason())

CLIENT_TIMEOUTS = dict(socket_timeout=1, socket_connect_timeout=1)


@dataclasses.dataclass
class SpreadCluster:
    """Redis nodes on namespace hosts; zone and host of each by its address."""

    net: NetnsHosts
    nodes: list
    host_of: dict

    def zone_of(self, node: RedisNode) -> str:
        return self.host_of[node.address].zone

    def on(self, host: NetnsHost) -> list:
        return [node for node in self.nodes if self.host_of[node.address] is host]

    def listed(self) -> list:
        """Every node as the modules' nodes option takes it, with its zone."""
        return [dict(host=node.host, port=node.port, zone=self.zone_of(node)) for node in self.nodes]

    def seed(self, avoid: NetnsHost | None = None) -> dict:
        node = next(node for node in self.nodes if self.host_of[node.address] is not avoid)
        login = {"login_host": node.host, "login_port": node.port}
        return dict(login, login_password=node.password) if node.password else login

    def by_id(self) -> dict:
        return {node.node_id(): node for node in self.nodes}

    def master_of(self, replica: RedisNode) -> RedisNode:
        return self.by_id()[next(f[3] for f in cluster_nodes_fields(replica) if "myself" in f[2])]


@pytest.fixture
def spread():
    """Factory: per zone, nodes on that zone's host (network namespaces), stopped and removed afterwards."""
    made = []

    def start(counts: dict = None) -> SpreadCluster:
        """counts: nodes per zone (two on each of a, b and c by default)."""
        counts = counts or {"a": 2, "b": 2, "c": 2}
        net = NetnsHosts(tuple(counts))
        made.append(net)
        nodes, host_of = [], {}
        for host in net:
            group = RedisNodes(counts[host.zone], host=host.address, command_prefix=host.command_prefix)
            made.append(group)
            nodes += group.nodes
            host_of.update((node.address, host) for node in group)
        return SpreadCluster(net, nodes, host_of)

    yield start
    for thing in reversed(made):
        thing.close()


def ok(result: dict) -> dict:
    assert not result.get("failed"), result.get("msg")
    assert "Traceback" not in json.dumps(result), result
    return result


def role(node: RedisNode) -> bytes:
    return node.call("ROLE")[0]


def created(cluster: SpreadCluster, nodes=None) -> None:
    """redis_cluster_create over nodes (all of them by default), one replica per master, zones from the hosts."""
    listed = [entry for entry in cluster.listed() if nodes is None or
              "%s:%d" % (entry["host"], entry["port"]) in {node.address for node in nodes}]
    ok(run_module("redis_cluster_create", dict(nodes=listed, replicas=1)))
    wait_converged(nodes or cluster.nodes)


def assert_spread(cluster: SpreadCluster) -> None:
    """One master per zone, and every replica in another zone than its master."""
    serving = masters(cluster.nodes)
    assert sorted(cluster.zone_of(node) for node in serving) == ["a", "b", "c"]
    for node in cluster.nodes:
        if role(node) == b"slave":
            assert cluster.zone_of(cluster.master_of(node)) != cluster.zone_of(node), node.address


def own_slots(node: RedisNode) -> set:
    fields = next(f for f in cluster_nodes_fields(node) if "myself" in f[2])
    return {slot for first, last in own_ranges(fields) for slot in range(first, last + 1)}


def hash_tag_in(slots: set) -> str:
    """A hash tag whose keys fall into one of slots."""
    return next("{%d}" % index for index in range(100000) if key_slot(b"%d" % index) in slots)


def timed(function, *args, **kwargs):
    started = time.monotonic()
    value = function(*args, **kwargs)
    return value, time.monotonic() - started


@dataclasses.dataclass
class Partition:
    """A master's host cut off and healed while two clients wrote: what happened, when (time.monotonic())."""

    victim: RedisNode
    replica: RedisNode
    victim_slots: set
    outside: Writer
    inside: HostWriter
    cut_at: float
    cut_seconds: float
    failover_seconds: float
    healed_at: float
    rejoin_seconds: float


def cut_a_master_off(cluster: SpreadCluster, victim_host: NetnsHost) -> Partition:
    """Cut the host of a master off until its replica on another host took over (and a second more), heal, and
    wait until the old master turned replica; two clients write throughout."""
    victim = next(node for node in masters(cluster.nodes) if cluster.host_of[node.address] is victim_host)
    replica = next(node for node in cluster.nodes if role(node) == b"slave" and cluster.master_of(node) is victim)
    victim_slots = own_slots(victim)
    observer = next(node for node in cluster.nodes if cluster.host_of[node.address] is not victim_host)
    # One client beside the nodes of the other hosts (the test process, through the uplink), writing keys of every
    # slot; one on the victim's host itself, writing keys of one slot of its master (a client of any other master
    # would stall on it through the partition).
    outside = Writer([observer], prefix="outside", **CLIENT_TIMEOUTS)
    inside = HostWriter(victim_host, victim, prefix=hash_tag_in(victim_slots) + "inside")
    outside.start()
    inside.start()
    try:
        # A replica still in its first sync (diskless, after repl-diskless-sync-delay) holds no data to serve and
        # never stands for election: the cut would prove nothing about failover.
        wait_for(lambda: replica.call("INFO", "replication").get("master_link_status") == "up", timeout=30,
                 message="the replica's first sync with its master")
        time.sleep(1)
        cut_at = time.monotonic()
        cluster.net.cut(victim_host)
        cut_seconds = time.monotonic() - cut_at
        wait_for(lambda: role(replica) == b"master", timeout=30, message="the replica to take over")
        failover_seconds = time.monotonic() - cut_at
        time.sleep(1)
        healed_at = time.monotonic()
        cluster.net.heal(victim_host)
        wait_for(lambda: role(victim) == b"slave", timeout=30, message="the old master to turn replica")
        rejoin_seconds = time.monotonic() - healed_at
        time.sleep(1)
    finally:
        cluster.net.heal(victim_host)
        outside.stop()
        inside.stop()
    wait_converged(cluster.nodes)
    return Partition(victim, replica, victim_slots, outside, inside, cut_at, cut_seconds, failover_seconds, healed_at,
                     rejoin_seconds)


def assert_writes_kept(cluster: SpreadCluster, partition: Partition, expected: dict) -> dict:
    """Every key written before is there with its value, and so is every acknowledged write but those the master
    cut off acknowledged while cut off (Redis' documented window); the figures."""
    stored = all_keys(cluster.nodes)
    assert {key: stored.get(key) for key in expected} == expected
    lost_in_window, lost = [], []
    for writer in (partition.outside, partition.inside):
        for key, value in writer.acknowledged.items():
            if stored.get(key) == value:
                continue
            at = writer.acknowledged_at[key]
            in_window = key_slot(key) in partition.victim_slots and partition.cut_at <= at <= partition.healed_at
            (lost_in_window if in_window else lost).append(key)
    assert lost == [], "%d acknowledged write(s) lost outside the partition's window: %s" % (len(lost), lost[:5])
    assert not any(key.startswith(b"outside") for key in lost_in_window)
    assert lost_in_window, "the master cut off lost nothing it acknowledged: was it cut off at all?"
    after_heal = sum(1 for at in partition.outside.acknowledged_at.values() if at > partition.healed_at)
    assert after_heal > 0, "the outside client wrote nothing after the heal"
    inside_in_window = [key for key, at in partition.inside.acknowledged_at.items()
                        if partition.cut_at <= at <= partition.healed_at]
    return {
        "cut_command_seconds": round(partition.cut_seconds, 3),
        "failover_seconds": round(partition.failover_seconds, 2), "rejoin_seconds": round(partition.rejoin_seconds, 2),
        "outside_acknowledged": len(partition.outside.acknowledged), "outside_errors": len(partition.outside.errors),
        "inside_acknowledged": len(partition.inside.acknowledged), "inside_errors": len(partition.inside.errors),
        "inside_acknowledged_while_cut_off": len(inside_in_window),
        "victim_accepted_writes_for_seconds": round(max(partition.inside.acknowledged_at[key]
                                                        for key in lost_in_window) - partition.cut_at, 2),
        "lost_in_window": len(lost_in_window), "lost_outside_window": len(lost)}


def test_a_master_cut_off_fails_over_and_fix_and_placement_restore_bring_it_back(spread):
    cluster = spread()
    created(cluster)
    assert_spread(cluster)
    expected = write_keys(cluster.nodes, 2000)
    partition = cut_a_master_off(cluster, cluster.net.hosts["host-a"])

    fixed, fix_seconds = timed(run_module, "redis_cluster_fix", cluster.seed())
    ok(fixed)
    restore = dict(nodes=cluster.listed(), placement="restore")
    restored, restore_seconds = timed(run_module, "redis_cluster_failover", restore)
    assert ok(restored)["changed"] is True
    wait_converged(cluster.nodes)
    assert role(partition.victim) == b"master" and role(partition.replica) == b"slave"
    assert_spread(cluster)
    assert_healthy(cluster.nodes[-1])
    assert ok(run_module("redis_cluster_failover", restore))["changed"] is False
    figures = assert_writes_kept(cluster, partition, expected)
    figures.update(fix_seconds=round(fix_seconds, 2), fix_changed=fixed["changed"],
                   restore_seconds=round(restore_seconds, 2))
    print("\nPARTITION-FIGURES " + json.dumps(figures))


PASSWORD = "partition pässword"


def test_a_master_cut_off_on_role_deployed_hosts_and_reconcile_restores_the_placement():
    """The roles deploy the instances inside the namespaces (their modules run there through a wrapper interpreter);
    after the failover, redis_cluster_fix and the reconcile playbook's restore_placement bring the cluster back."""
    started = time.monotonic()
    with NetnsHosts() as net, RoleHosts(password=PASSWORD) as role_hosts:
        role_hosts.group_vars["redis_cluster_reconcile_history_dir"] = os.path.join(role_hosts.root, "history")
        deployed = [role_hosts.add("redis_cluster", host.zone, 2, namespace=host) for host in net]
        run, deploy_seconds = timed(run_collection_playbook, "deploy", role_hosts.inventory())
        assert run.rc == 0, run.output
        nodes = [RoleInstance(host, port, PASSWORD) for host in deployed for port in host.ports]
        cluster = SpreadCluster(net, nodes, {node.address: net.hosts[node.role_host.name] for node in nodes})
        wait_converged(nodes)
        assert_spread(cluster)
        expected = write_keys(nodes, 2000)
        partition = cut_a_master_off(cluster, net.hosts["host-a"])

        fixed, fix_seconds = timed(run_module, "redis_cluster_fix", cluster.seed())
        ok(fixed)
        run, reconcile_seconds = timed(run_collection_playbook, "reconcile", role_hosts.inventory())
        assert run.rc == 0, run.output
        assert PASSWORD not in run.output
        lines = reconcile_decisions(run.output)
        assert [line.split(":")[0] for line in lines] == ["restore_placement"], lines
        assert "TASK [Spread the masters over the zones again]" in run.output
        wait_converged(nodes)
        assert role(partition.victim) == b"master" and role(partition.replica) == b"slave"
        assert_spread(cluster)
        assert_healthy(nodes[-1])
        again = run_collection_playbook("reconcile", role_hosts.inventory())
        assert again.rc == 0 and sum(counts["changed"] for counts in again.recap.values()) == 0, again.output
        figures = assert_writes_kept(cluster, partition, expected)
    print("\nRECONCILE-PARTITION-FIGURES " + json.dumps(dict(
        figures, deploy_seconds=round(deploy_seconds, 2), fix_seconds=round(fix_seconds, 2),
        fix_changed=fixed["changed"], reconcile_seconds=round(reconcile_seconds, 2), decisions=lines,
        test_seconds=round(time.monotonic() - started, 2))))


def progress(path: str) -> int:
    """Slots done, from the rebalance's progress file."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    return json.loads(lines[-1])["slots_done"] if lines else 0


def no_failure_flags(nodes) -> bool:
    """Every node answers and flags nobody as failing: the partition is over in everyone's view."""
    try:
        return all(not {"fail", "fail?"} & set(fields[2].split(",")) for node in nodes
                   for fields in cluster_nodes_fields(node))
    except (OSError, redis.RedisError):
        return False


def test_a_host_cut_off_in_the_middle_of_a_rebalance(spread):
    cluster = spread({"a": 2, "b": 2, "c": 3})
    host_c = cluster.net.hosts["host-c"]
    empty = cluster.on(host_c)[-1]
    created(cluster, [node for node in cluster.nodes if node is not empty])
    expected = write_keys(cluster.nodes, 20000, size=64)
    # The empty master joins on host c: the rebalance moves a quarter of the slots onto it, a share from each master.
    cluster.nodes[0].call("CLUSTER", "MEET", empty.host, empty.port, empty.bus_port)
    wait_converged(cluster.nodes)
    progress_file = tempfile.NamedTemporaryFile(delete=False, prefix="redisops-rebalance-")
    progress_file.close()
    outcome = {}
    rebalance = threading.Thread(target=lambda: outcome.update(run_module(
        "redis_cluster_rebalance", dict(cluster.seed(avoid=host_c), progress_file=progress_file.name))))
    rebalance.start()
    try:
        wait_for(lambda: progress(progress_file.name) >= 500 or not rebalance.is_alive(), timeout=300,
                 interval=0.02, message="the rebalance to move 500 slots")
        assert rebalance.is_alive(), "the rebalance finished before the cut: %s" % outcome
        slots_at_cut = progress(progress_file.name)
        cluster.net.cut(host_c)
        time.sleep(6)  # three node timeouts: host c's master fails over to its replica on host a or b
        cluster.net.heal(host_c)
        rebalance.join(600)
        assert not rebalance.is_alive()
    finally:
        cluster.net.heal(host_c)
        os.unlink(progress_file.name)
    assert "Traceback" not in json.dumps(outcome), outcome
    if outcome.get("failed"):
        # The message names the node that could not be reached (all of them are on host c).
        assert host_c.address + ":" in outcome["msg"], outcome["msg"]
    wait_for(lambda: no_failure_flags(cluster.nodes), timeout=60, message="the partition healed in every view")

    fixed, fix_seconds = timed(run_module, "redis_cluster_fix", cluster.seed())
    ok(fixed)
    resumed, resume_seconds = timed(run_module, "redis_cluster_rebalance", cluster.seed())
    ok(resumed)
    wait_converged(cluster.nodes)
    again = ok(run_module("redis_cluster_rebalance", cluster.seed()))
    assert again["changed"] is False, again
    assert_healthy(cluster.nodes[0])
    assert sorted(len(own_slots(node)) for node in masters(cluster.nodes)) == [4096] * 4
    stored = all_keys(cluster.nodes)
    assert {key: stored.get(key) for key in expected} == expected
    print("\nREBALANCE-PARTITION-FIGURES " + json.dumps({
        "slots_at_cut": slots_at_cut, "interrupted_failed": bool(outcome.get("failed")),
        "interrupted_msg": outcome.get("msg"), "interrupted_slots_moved": outcome.get("slots_moved"),
        "fix_seconds": round(fix_seconds, 2), "fix_changed": fixed["changed"], "fix_actions": fixed.get("actions"),
        "resume_seconds": round(resume_seconds, 2), "resume_changed": resumed["changed"],
        "resume_slots_moved": resumed.get("slots_moved"), "keys": len(expected)}))
