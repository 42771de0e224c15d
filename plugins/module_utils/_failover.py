# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Failover plans: which replica to promote, whether it may be, and the failovers that restore placement. Private to
redisops.cluster.

Pure code: no I/O and no Ansible imports. A plan is FAILOVER steps (the executor sends CLUSTER FAILOVER and waits
until ROLE has switched on both sides) and, when the cluster can settle, a final wait until every node agrees.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from ._membership import converged_step
from ._placement import Candidate, shared_domains
from ._planner import FAILOVER, Plan, PlanError, Step, candidate
from ._topology import ClusterState, Node

# The mode option -> the CLUSTER FAILOVER argument.
MODES = {"default": "", "force": "FORCE", "takeover": "TAKEOVER"}
# Bytes of replication offset a replica may be behind its master for a default failover: Redis' default
# replication backlog (repl-backlog-size). A replica further behind could not even resume its link by a partial
# resync; one within it catches up in milliseconds while its master holds clients back, far inside the 5 s a
# manual failover may take before Redis gives it up.
DEFAULT_MAX_LAG = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ReplicaHealth:
    """A replica's replication as its own INFO and every view tell it."""

    node: Node
    lag: int  # bytes behind its master (behind its most advanced sibling when the master cannot be read); -1 unknown
    problem: str = ""  # why it is not synced; '' when it is

    @property
    def synced(self) -> bool:
        return not self.problem


@dataclasses.dataclass(frozen=True)
class Shard:
    """A master serving slots and its replicas, as placement sees them."""

    master: Candidate
    replicas: tuple = ()

    def promoted(self, key: str) -> Shard:
        """The shard once the member key is its master: the old master and the other replicas replicate it."""
        members = (self.master,) + self.replicas
        return Shard(next(member for member in members if member.key == key),
                     tuple(sorted((member for member in members if member.key != key), key=lambda member: member.key)))


@dataclasses.dataclass(frozen=True)
class Decision:
    """The plan, one entry per failover it holds, and the placement cost before and after it."""

    plan: Plan
    failovers: tuple = ()
    placement: dict = dataclasses.field(default_factory=dict)


# --- placement ---------------------------------------------------------------------------------------

def placement_cost(shards) -> tuple:
    """(replicas sharing a host, rack or zone with their master, masters beyond (M - 1) // 2 in any one domain): the
    placement goals 1 and 3, compared lexicographically; losing a domain that holds more masters than that cap leaves
    too few to vote a failover."""
    shared = sum(1 for shard in shards for replica in shard.replicas if shared_domains(shard.master, replica))
    cap = (len(shards) - 1) // 2
    per_domain = Counter(domain for shard in shards for domain in shard.master.domains())
    return shared, sum(max(0, count - cap) for count in per_domain.values())


def with_promoted(shards: tuple, index: int, key: str) -> tuple:
    return shards[:index] + (shards[index].promoted(key),) + shards[index + 1:]


def restore_choices(shards: tuple, eligible) -> tuple:
    """(shard index, key of its new master) for the shards whose master should change: greedily, the single change
    (any shard, any of its members in eligible) that lowers placement_cost most, until none lowers it. A shard's
    members are its master and its eligible replicas, so a master demoted by one change may be restored by a later
    one: each shard changes master at most once in the result."""
    current = list(shards)
    cost = placement_cost(current)
    members = [(shard.master.key,) + tuple(replica.key for replica in shard.replicas if replica.key in eligible)
               for shard in shards]
    while True:
        best = None
        for index, shard in enumerate(current):
            for key in members[index]:
                if key == shard.master.key:
                    continue
                trial = (placement_cost(with_promoted(tuple(current), index, key)), key, index)
                if trial[0] < cost and (best is None or trial < best):
                    best = trial
        if best is None:
            break
        cost, key, index = best
        current[index] = current[index].promoted(key)
    return tuple((index, shard.master.key) for index, (shard, before) in enumerate(zip(current, shards))
                 if shard.master.key != before.master.key)


def best_replica(shards: tuple, index: int, options) -> str:
    """The key of the replica of shards[index] to promote among options ((key, lag) pairs): the smallest lag, then
    the promotion that leaves the lowest placement_cost, then the smallest address."""
    return min(options, key=lambda option: (option[1], placement_cost(with_promoted(shards, index, option[0])),
                                            option[0]))[0]


def layout(state: ClusterState) -> tuple:
    """The shards of every master that serves slots, in address order."""
    return tuple(Shard(candidate(master), tuple(candidate(replica) for replica in state.replicas_of(master.id)))
                 for master in state.masters if master.entry.slots)


def _placement_report(before: tuple, after: tuple) -> dict:
    def described(shards) -> dict:
        shared, crowding = placement_cost(shards)
        return {"replicas_sharing_a_domain": shared, "masters_over_domain_cap": crowding}

    return {"before": described(before), "after": described(after)}


# --- health ------------------------------------------------------------------------------------------

def flagged_by(state: ClusterState, node_id: str) -> list:
    """'observer (flag)' for every reachable view that flags the node fail or fail?."""
    return ["%s (%s)" % (obs.address.key, "fail" if entry.failed else "fail?")
            for obs in state.reachable for entry in obs.entries
            if entry.id == node_id and (entry.failed or entry.possibly_failed)]


def master_problem(state: ClusterState, master: Node) -> str:
    """Why master could not agree to a default failover; '' when it answers and nobody flags it."""
    if not master.reachable:
        error = master.observation.error if master.observation is not None else "not among the nodes read"
        return "%s cannot be reached (%s)" % (master.describe(), error)
    flags = flagged_by(state, master.id)
    return "%s is flagged failing by %s" % (master.describe(), ", ".join(flags)) if flags else ""


def cluster_problem(state: ClusterState) -> str:
    not_ok = [obs.address.key for obs in state.reachable if obs.cluster_info.get("cluster_state") != "ok"]
    return "cluster_state is not ok on %s" % ", ".join(not_ok) if not_ok else ""


def replica_health(state: ClusterState, master: Node) -> tuple:
    """The health of every replica of master. Lag is measured against the master's offset when it answers, else
    against its most advanced reachable replica (what a forced failover would lose relative to the best choice)."""
    replicas = state.replicas_of(master.id)
    offsets = {replica.id: replica.observation.info.get("slave_repl_offset", 0)
               for replica in replicas if replica.reachable}
    if master.reachable:
        reference = master.observation.info.get("master_repl_offset", 0)
    else:
        reference = max(offsets.values(), default=0)
    return tuple(ReplicaHealth(replica, max(0, reference - offsets[replica.id]) if replica.id in offsets else -1,
                               _replica_problem(state, replica)) for replica in replicas)


def _replica_problem(state: ClusterState, replica: Node) -> str:
    if not replica.reachable:
        return "%s cannot be reached" % replica.describe()
    flags = flagged_by(state, replica.id)
    if flags:
        return "%s is flagged failing by %s" % (replica.describe(), ", ".join(flags))
    info = replica.observation.info
    if info.get("master_link_status") != "up":
        return "%s has master_link_status:%s" % (replica.describe(), info.get("master_link_status", "unknown"))
    # A replica loading its master's data has its link down until it is done, so an up link also means not loading.
    if info.get("master_sync_in_progress"):
        return "%s is still in its initial sync" % replica.describe()
    return ""


def default_blockers(state: ClusterState, health: ReplicaHealth, master: Node, max_lag: int) -> list:
    """What keeps a default failover of health.node from going ahead, each with what to do; [] when nothing does."""
    problem = master_problem(state, master)
    if problem:
        return ["%s; a default failover needs its master to answer and agree - use mode force (mode takeover when "
                "most masters are down too)" % problem]
    blockers = []
    problem = cluster_problem(state)
    if problem:
        blockers.append("%s; repair the cluster first (redisops.cluster.redis_cluster_fix)" % problem)
    if not health.synced:
        blockers.append("%s; a default failover waits until it holds every write of its master - wait until it has "
                        "synced or promote another replica" % health.problem)
    elif health.lag > max_lag:
        blockers.append("%s is %d bytes behind its master, more than max_lag %d; wait until it catches up, promote "
                        "another replica, or raise max_lag (its master holds clients back while it catches up)"
                        % (health.node.describe(), health.lag, max_lag))
    return blockers


# --- plans -------------------------------------------------------------------------------------------

def plan_promotion(state: ClusterState, replica: Node, mode: str, max_lag: int) -> Decision:
    """A failover that makes replica a master; an empty plan when it is one already. Raises PlanError, before any
    write, when it cannot or should not be done in this mode."""
    if replica.role == "master":
        if not replica.entry.slots:
            raise PlanError("node: %s is a master that serves no slot, so there is nothing for it to take over; give "
                            "a replica (or use master to promote the best replica of a master)" % replica.describe())
        return Decision(Plan())
    master = _master_of(state, replica)
    health = next(item for item in replica_health(state, master) if item.node.id == replica.id)
    return _failover_of(state, master, health, mode, max_lag)


def plan_master_failover(state: ClusterState, master: Node, mode: str, max_lag: int) -> Decision:
    """A failover that promotes the best replica of master; an empty plan when master is a replica or serves no slot
    (its failover happened: a dead master keeps no slot in the views once its replica took over). Raises PlanError
    when no replica may be promoted in this mode."""
    if master.role == "replica" or not master.entry.slots:
        return Decision(Plan())
    health = replica_health(state, master)
    if not health:
        raise PlanError("master: %s has no replica to promote; add one first (redisops.cluster.redis_cluster_node)"
                        % master.describe())
    ready = [item for item in health if not default_blockers(state, item, master, max_lag)]
    # A replica ready for a default failover is the choice in any mode: a forced one is then refused (_failover_of).
    fit = ready or ([item for item in health if item.node.reachable] if MODES[mode] else [])
    if not fit:
        reasons = [item.problem for item in health] if MODES[mode] else \
            [blocker for item in health for blocker in default_blockers(state, item, master, max_lag)]
        raise PlanError("master: no replica of %s can take over%s: %s"
                        % (master.describe(), "" if MODES[mode] else " in a default failover",
                           "; ".join(dict.fromkeys(reasons))))
    shards = layout(state)
    index = _shard_index(shards, master)
    chosen = best_replica(shards, index, [(item.node.address, item.lag) for item in fit])
    return _failover_of(state, master, next(item for item in fit if item.node.address == chosen), mode, max_lag)


def plan_restore(state: ClusterState, max_lag: int) -> Decision:
    """Default failovers wherever promoting a synced replica lowers placement_cost (restore_choices); an empty plan
    when none does."""
    problem = cluster_problem(state)
    if problem:
        raise PlanError("placement restore plans default failovers only, and %s; repair the cluster first "
                        "(redisops.cluster.redis_cluster_fix)" % problem)
    shards = layout(state)
    eligible = {}
    for master in state.masters:
        if master.entry.slots:
            eligible.update((item.node.address, item) for item in replica_health(state, master)
                            if not default_blockers(state, item, master, max_lag))
    choices = restore_choices(shards, set(eligible))
    steps, failovers = [], []
    after = list(shards)
    for index, key in choices:
        master = _node_at(state, shards[index].master.key)
        step, failover = _failover_step(state, master, eligible[key], "")
        steps.append(step)
        failovers.append(failover)
        after[index] = after[index].promoted(key)
    if steps:
        steps.append(converged_step())
    return Decision(Plan(tuple(steps)), tuple(failovers), _placement_report(shards, tuple(after)))


def _failover_of(state: ClusterState, master: Node, health: ReplicaHealth, mode: str, max_lag: int) -> Decision:
    replica = health.node
    if not master.entry.slots:
        raise PlanError("node: %s replicates %s, which serves no slot; Redis fails over only the replicas of a master "
                        "that serves slots" % (replica.describe(), master.describe()))
    if not replica.reachable:
        raise PlanError("node: %s cannot be reached, and CLUSTER FAILOVER must be sent to it" % replica.describe())
    blockers = default_blockers(state, health, master, max_lag)
    if not MODES[mode] and blockers:
        raise PlanError("node: %s cannot take over in a default failover: %s"
                        % (replica.describe(), "; ".join(blockers)))
    if MODES[mode] and not blockers:
        raise PlanError("node: a default failover of %s can go ahead (its master %s answers, it is synced and %d bytes "
                        "behind, within max_lag %d): use mode default, which loses no write; mode %s does not wait "
                        "for the writes it has not received" % (replica.describe(), master.describe(), health.lag,
                                                                max_lag, mode))
    step, failover = _failover_step(state, master, health, MODES[mode])
    steps, warnings = [step], ()
    down = [node.describe() for node in state.masters if node.entry.slots and node.id != master.id
            and (not node.reachable or flagged_by(state, node.id))]
    if down:
        warnings = ("the run does not wait for the cluster to settle: other masters that serve slots are down (%s), so "
                    "cluster_state stays fail until their shards fail over too" % ", ".join(down),)
    else:
        steps.append(converged_step())
    shards = layout(state)
    after = with_promoted(shards, _shard_index(shards, master), replica.address)
    return Decision(Plan(tuple(steps), warnings), (failover,), _placement_report(shards, after))


def _failover_step(state: ClusterState, master: Node, health: ReplicaHealth, mode: str) -> tuple:
    replica = health.node
    old_master = master.address if master.reachable else ""
    lag = "%d bytes behind" % health.lag if health.lag >= 0 else "lag unknown"
    step = Step(FAILOVER, replica.address, replica.id, (mode, old_master),
                "%s: fail over%s from master %s (%s), then check ROLE on %s"
                % (replica.describe(), " " + mode if mode else "", master.describe(), lag,
                   "both" if old_master else "the replica (its master cannot be reached)"))
    return step, {"replica": replica.address, "replica_id": replica.id, "master": master.address,
                  "master_id": master.id, "mode": mode.lower() or "default", "lag": health.lag}


def _master_of(state: ClusterState, replica: Node) -> Node:
    master = state.by_id.get(replica.entry.master_id)
    if master is None:
        raise PlanError("node: %s replicates %s, which no node knows; repair the cluster first "
                        "(redisops.cluster.redis_cluster_fix)" % (replica.describe(), replica.entry.master_id))
    return master


def _shard_index(shards: tuple, master: Node) -> int:
    return next(index for index, shard in enumerate(shards) if shard.master.key == master.address)


def _node_at(state: ClusterState, address: str) -> Node:
    return next(node for node in state.nodes if node.address == address)
