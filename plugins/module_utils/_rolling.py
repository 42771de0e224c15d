# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The order of a rolling restart, and what must hold before it starts and after each step. Private to
redisops.cluster.

Pure code on the facts form of redis_cluster_facts (plain dicts): no I/O and no Ansible imports. Replicas go first,
one at a time; then each shard in turn: its master fails over to a synced replica, restarts as a replica, and (with
failback) is promoted back, so that at most one node of a shard is ever down.
"""

from __future__ import annotations

import dataclasses

from ._slots import SLOT_COUNT
from ._topology import format_address

RESTART = "restart"
FAILOVER = "failover"
FAILBACK = "failback"

# Findings that say the cluster is not in a state to lose a node for a while, even briefly.
BLOCKING_FINDINGS = ("node_unreachable", "node_failing", "uncovered_slots", "multiple_owners", "open_slot",
                     "inconsistent_config")


@dataclasses.dataclass(frozen=True)
class Step:
    """One step: restart node on its inventory host, fail the master node over, or promote node back (failback).
    expect is what node must be once the step is done: 'synced replica', 'replica' or 'master'."""

    action: str
    node: str
    host: str
    port: int
    expect: str
    shard: str  # host:port of the shard's master when the run started
    text: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RollingPlan:
    steps: tuple = ()
    blockers: tuple = ()  # why the run must not start; each names what blocks
    warnings: tuple = ()  # shards restarted without a synced replica, as the user allowed

    def as_dict(self) -> dict:
        return {"steps": [step.as_dict() for step in self.steps], "blockers": list(self.blockers),
                "warnings": list(self.warnings)}


def address(node: dict) -> str:
    return format_address(node["host"], node["port"])


def gate_problems(facts: dict) -> list:
    """What keeps the cluster from losing a node for a restart: cluster_state not ok on a node, slots not covered,
    open slots, nodes unreachable, flagged fail or fail?, or loading, views that disagree; [] when nothing does."""
    if facts.get("state") == "not_configured":
        return ["the nodes form no cluster yet; deploy it first (redisops.cluster.deploy)"]
    problems = [finding["message"] for finding in facts.get("findings", ()) if finding["kind"] in BLOCKING_FINDINGS]
    for node in facts["nodes"]:
        if not node["reachable"]:
            continue
        if node.get("cluster_state") != "ok":
            problems.append("cluster_state is %s on %s" % (node.get("cluster_state"), address(node)))
        if node.get("loading"):
            problems.append("%s is still loading its data set" % address(node))
    kinds = {finding["kind"] for finding in facts.get("findings", ())}
    if facts.get("slots_covered", 0) < SLOT_COUNT and "uncovered_slots" not in kinds:
        problems.append("%d of %d slots are covered" % (facts.get("slots_covered", 0), SLOT_COUNT))
    return problems


def replica_problem(node: dict) -> str:
    """Why a replica is not synced with its master; '' when it is."""
    if not node["reachable"]:
        return "%s cannot be reached" % address(node)
    if node.get("loading"):
        return "%s is loading its data set" % address(node)
    if node.get("master_link_status") != "up":
        return "%s has master_link_status:%s" % (address(node), node.get("master_link_status") or "unknown")
    if node.get("master_sync_in_progress"):
        return "%s is in a full sync from its master" % address(node)
    return ""


def plan_rolling_restart(facts: dict, node_hosts: dict, allow_unprotected: bool = False, failback: bool = True,
                         hosts=None) -> RollingPlan:
    """Every node of the cluster restarted once, replicas first, then shard by shard (see the module docstring).
    node_hosts maps host:port to the inventory host that runs the instance; with hosts (inventory host names, the
    play's hosts) only the nodes those hosts run restart. A shard whose master restarts but has no synced replica is a
    blocker, or with allow_unprotected a warning and a restart of its master in place."""
    blockers = gate_problems(facts)
    if facts.get("state") == "not_configured":
        return RollingPlan(blockers=tuple(blockers))
    nodes = sorted(facts["nodes"], key=lambda node: (node["host"], node["port"]))
    by_id = {node["id"]: node for node in nodes}
    missing = [address(node) for node in nodes if address(node) not in node_hosts]
    if missing:
        listed = ", ".join(sorted(node_hosts)) or "none"
        blockers.append("no inventory host of the group runs %s (redis_cluster_node_hosts lists %s); add the hosts "
                        "that run every node of the cluster to the group" % (", ".join(missing), listed))
    replicas = {node["id"]: [other for other in nodes if other.get("master_id") == node["id"]] for node in nodes}
    if hosts is not None:
        nodes = [node for node in nodes if node_hosts.get(address(node)) in set(hosts)]
    masters = [node for node in nodes if node["role"] == "master"]
    steps, warnings = [], []
    # A replica not synced before its restart is not waited for to sync after it.
    for replica in sorted((node for node in nodes if node["role"] == "replica"),
                          key=lambda node: (_master_address(node, by_id), node["host"], node["port"])):
        steps.append(_restart(replica, node_hosts, _master_address(replica, by_id),
                              "replica" if replica_problem(replica) else "synced replica"))
    for master in masters:
        if not master["slot_count"]:
            steps.append(_restart(master, node_hosts, address(master), "master"))
            continue
        synced = [replica for replica in replicas[master["id"]] if not replica_problem(replica)]
        if synced:
            steps.extend(_shard_steps(master, node_hosts, failback))
            continue
        reasons = [replica_problem(replica) for replica in replicas[master["id"]]] or ["it has no replica"]
        unprotected = ("the shard of %s (%d slots) has no synced replica to take over while its master restarts: %s"
                       % (address(master), master["slot_count"], "; ".join(reasons)))
        if allow_unprotected:
            warnings.append(unprotected + "; its master restarts in place, and its slots are not served meanwhile")
            steps.append(_restart(master, node_hosts, address(master), "master"))
        else:
            blockers.append(unprotected + "; add or repair a replica first, or set "
                            "redis_cluster_rolling_restart_allow_unprotected to restart its master in place")
    return RollingPlan(tuple(steps), tuple(blockers), tuple(warnings))


def _master_address(replica: dict, by_id: dict) -> str:
    """host:port of a replica's master; its id when no node knows it."""
    master = by_id.get(replica.get("master_id"))
    return address(master) if master else str(replica.get("master_id"))


def _restart(node: dict, node_hosts: dict, shard: str, expect: str) -> Step:
    where = node_hosts.get(address(node), "?")
    if node["role"] == "replica":
        what = "replica %s (of %s)" % (address(node), shard)
    else:
        what = "master %s (%d slots, no failover)" % (address(node), node["slot_count"])
    return Step(RESTART, address(node), where, node["port"], expect, shard,
                "restart %s on %s, then wait until it is a %s" % (what, where, expect))


def _shard_steps(master: dict, node_hosts: dict, failback: bool) -> list:
    name, where = address(master), node_hosts.get(address(master), "?")
    steps = [
        Step(FAILOVER, name, where, master["port"], "replica", name,
             "fail master %s (%d slots) over to its best synced replica" % (name, master["slot_count"])),
        Step(RESTART, name, where, master["port"], "synced replica", name,
             "restart %s, now a replica, on %s, then wait until it is a synced replica" % (name, where)),
    ]
    if failback:
        steps.append(Step(FAILBACK, name, where, master["port"], "master", name,
                          "fail back: promote %s to master of its shard again" % name))
    return steps


def step_pending(facts: dict, step: dict) -> list:
    """What is not yet true after a step (a Step.as_dict()): the gates, and node being what step['expect'] says;
    [] once the next step may begin."""
    problems = gate_problems(facts)
    node = next((node for node in facts.get("nodes", ()) if address(node) == step["node"]), None)
    if node is None:
        return problems + ["no node of the cluster is %s" % step["node"]]
    role = "replica" if step["expect"].endswith("replica") else "master"
    if node["role"] != role:
        problems.append("%s is a %s, not yet a %s" % (step["node"], node["role"], role))
    elif step["expect"] == "synced replica" and replica_problem(node):
        problems.append(replica_problem(node))
    elif node["reachable"] is False:
        problems.append("%s cannot be reached" % step["node"])
    return problems


def _role_before(step: dict) -> str:
    """The role a step's node had when the plan made the step: a failover fails a master over, a failback promotes a
    replica, a restart leaves the node what it is."""
    if step["action"] == FAILOVER:
        return "master"
    if step["action"] == FAILBACK:
        return "replica"
    return "replica" if step["expect"].endswith("replica") else "master"


def step_stale(facts: dict, step: dict) -> list:
    """Why a step (a Step.as_dict()) no longer fits the cluster the facts show before it: its node is no longer the
    master or the replica the plan found (a failover since the run began: restarting a replica that took over would
    restart a master in place, and waiting for it to be a replica again would never end); [] when the step may run."""
    node = next((node for node in facts.get("nodes", ()) if address(node) == step["node"]), None)
    if node is None:
        return ["no node of the cluster is %s" % step["node"]]
    role = _role_before(step)
    if node["role"] != role:
        return ["%s is a %s now, where the plan found a %s (a failover since the run began)" % (
            step["node"], node["role"], role)]
    return []
