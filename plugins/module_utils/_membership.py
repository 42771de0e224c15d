# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Who may join or leave a cluster, and the steps that do it. Private to redisops.cluster.

Pure code: no I/O and no Ansible imports. The node backend (_lifecycle) observes, calls these, and applies.
"""

from __future__ import annotations

import re

from ._placement import shared_domains
from ._planner import (
    FAILOVER, MEET, NO_FAILOVER, REMOVE_NODE, WAIT_CONVERGED, PlanError, Step, candidate, replicate_step, synced_step,
)
from ._slots import count_slots
from ._topology import ClusterState, Node, NodeObservation, format_address, named_nodes

# Fault-domain levels, most important first: a replica in its master's host shares the worst failure.
_LEVEL_WEIGHT = {"host": 4, "rack": 2, "zone": 1}


NODE_ID = re.compile(r"[0-9a-f]{8,40}")


def find_node(state: ClusterState, name: str):
    """The node a name means (node id, id prefix of 8+ characters, or host:port), None when no node is named so;
    PlanError when the name fits several, or is neither form (a typo must not read as a node that is absent)."""
    if ":" not in name and not NODE_ID.fullmatch(name):
        raise PlanError("%r is neither host:port nor a node id (8 to 40 hex digits); give one of those" % name)
    found = named_nodes(state.nodes, name)
    if len(found) > 1:
        named = ", ".join(node.describe() for node in found)
        raise PlanError("%r names %d nodes (%s); give a full node id" % (name, len(found), named))
    return found[0] if found else None


def refuse_unfit(joining: NodeObservation, state: ClusterState) -> None:
    """A node joins only empty and alone: no keys, no slots, no other cluster in its view."""
    where = joining.address.key
    if not joining.reachable:
        raise PlanError("node: cannot reach %s (%s); start it, or check its address and the credentials"
                        % (where, joining.error))
    me = joining.myself
    if me.slots:
        raise PlanError("node: %s serves slots of another cluster; run CLUSTER RESET on it, or give another node"
                        % where)
    members = {node.id for node in state.nodes}
    strangers = [entry for entry in joining.entries
                 if not entry.myself and entry.id not in members and "handshake" not in entry.flags]
    if strangers:
        raise PlanError("node: %s knows node(s) of another cluster (%s); run CLUSTER RESET on it before adding it"
                        % (where, ", ".join(format_address(e.host, e.port) for e in strangers[:5])))
    if joining.keys:
        raise PlanError("node: %s holds %d key(s); a node joins empty - flush it (FLUSHALL) or give another node"
                        % (where, joining.keys))


def meet_steps(state: ClusterState, joining: NodeObservation) -> list:
    """A member meets the new node, and every node learns it."""
    me = joining.myself
    member = next(node for node in serving_masters(state) if node.reachable and node.id != me.id)
    bus_port = me.bus_port or joining.address.port + 10000
    return [Step(MEET, member.address, member.id, (joining.address.host, joining.address.port, bus_port),
                 "%s: meet %s (%s)" % (member.describe(), joining.address.key, me.id[:8])),
            Step(WAIT_CONVERGED, "", description="wait until every node knows %s" % joining.address.key)]


def attach_steps(replica: Node, master: Node) -> list:
    """replica follows master, and its first sync is over."""
    return [replicate_step(replica, master), synced_step(replica, master)]


def converged_step() -> Step:
    return Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots")


def removal_steps(node: Node) -> list:
    return [Step(REMOVE_NODE, "", node.id, (node.id, node.address if node.reachable else ""),
                 "every node forgets %s%s" % (node.describe(), "; it is reset" if node.reachable else "")),
            converged_step()]


def no_failover_step(leaving: Node) -> Step:
    return Step(NO_FAILOVER, leaving.address, leaving.id, (),
                "%s: takes no part in failovers until it has left (CONFIG SET cluster-replica-no-failover yes, where"
                " the login user may; the removal's reset puts the setting back)" % leaving.describe())


def failover_step(replica: Node, master: Node) -> Step:
    return Step(FAILOVER, replica.address, replica.id, ("", master.address if master.reachable else ""),
                "%s: take over from %s (CLUSTER FAILOVER: the master pauses its clients until the replica has every"
                " write)" % (replica.describe(), master.describe()))


# --- choosing a master for a replica -------------------------------------------------------------------------

def serving_masters(state: ClusterState, leaving=()) -> list:
    """Masters that serve slots and are not flagged failed, minus the ids in leaving."""
    return [node for node in state.masters
            if node.entry.slots and not node.entry.failed and node.id not in leaving]


def live_replicas(state: ClusterState, master_id: str) -> list:
    return [node for node in state.replicas_of(master_id) if not node.entry.failed and not node.entry.possibly_failed]


def best_master(state: ClusterState, replica: Node, masters, taken=None) -> Node:
    """The master replica should follow, by the placement goals: share no host, rack or zone with it (host worst),
    nor with its other replicas, then the fewest replicas; taken: {master id: replicas already given to it}."""
    if not masters:
        raise PlanError("no master serves slots for %s to replicate" % replica.describe())
    mine = candidate(replica)
    taken = taken or {}

    def rank(master: Node) -> tuple:
        others = [candidate(node) for node in live_replicas(state, master.id) if node.id != replica.id]
        return (_shared_weight(mine, candidate(master)), sum(_shared_weight(mine, other) for other in others),
                len(others) + taken.get(master.id, 0), master.address)

    return min(masters, key=rank)


def _shared_weight(first, second) -> int:
    return sum(_LEVEL_WEIGHT[level] for level in shared_domains(first, second))


def rehome_steps(state: ClusterState, leaving: Node) -> list:
    """The reachable replicas of a leaving master follow the masters that need them most."""
    masters = serving_masters(state, leaving=(leaving.id,))
    taken, steps = {}, []
    for replica in state.replicas_of(leaving.id):
        if not replica.reachable:
            continue
        master = best_master(state, replica, masters, taken)
        taken[master.id] = taken.get(master.id, 0) + 1
        steps += attach_steps(replica, master)
    return steps


def replacement_steps(state: ClusterState, old: Node, new: Node) -> list:
    """How new takes old's place without moving a slot (old's removal follows)."""
    if new.role == "master" and new.entry.slots and old.entry.master_id != new.id:
        raise PlanError("node: %s already serves slots; replace takes an empty node or a replica of %s"
                        % (new.describe(), old.describe()))
    if old.role == "master" and old.entry.slots:
        if not old.reachable:
            raise PlanError("replace: %s is unreachable and still serves slots, and no replica has taken over; promote"
                            " its replica first (redisops.cluster.redis_cluster_failover, mode takeover), or remove it"
                            " with allow_data_loss and add %s on its own" % (old.describe(), new.describe()))
        # The master accepts a manual failover only from a node its own view holds as its replica: wait for the views.
        return _following(new, old) + [converged_step(), failover_step(new, old), converged_step()]
    if old.role == "master":
        # A master that serves nothing (its replica took over when it died): the new node follows the master that
        # needs a replica most, which is usually the one that took over; the old one's replicas are re-homed.
        steps = [] if new.role == "replica" else attach_steps(new, best_master(state, new, serving_masters(
            state, leaving=(old.id,))))
        return steps + rehome_steps(state, old)
    if old.entry.master_id == new.id:
        return []
    return _following(new, state.by_id[old.entry.master_id])


def _following(replica: Node, master: Node) -> list:
    """replica follows master and has synced with it (the wait alone when it follows it already)."""
    steps = attach_steps(replica, master)
    return steps if replica.entry.master_id != master.id else steps[1:]


# --- refusals before a node leaves ---------------------------------------------------------------------------

def refuse_removal(state: ClusterState, node: Node, force: bool, min_replicas: int, allow_data_loss: bool) -> None:
    if min_replicas < 0:
        raise PlanError("min_replicas must be 0 or more, got %d" % min_replicas)
    if not node.reachable and not node.entry.failed and not force:
        raise PlanError("node: %s does not answer, but the cluster has not flagged it failed (fail) yet; wait for "
                        "the node timeout, or set force: true if it is gone for good" % node.describe())
    if node.role == "master" and node.entry.slots:
        _refuse_master_removal(state, node, allow_data_loss)
    elif node.role == "replica" and not node.entry.failed and not force:
        left = len([r for r in live_replicas(state, node.entry.master_id) if r.id != node.id])
        if left < min_replicas:
            raise PlanError("node: removing replica %s leaves its master %s with %d live replica(s), fewer than "
                            "min_replicas %d; add a replica first, or set force: true"
                            % (node.describe(), state.label(node.entry.master_id), left, min_replicas))


def _refuse_master_removal(state: ClusterState, node: Node, allow_data_loss: bool) -> None:
    others = serving_masters(state, leaving=(node.id,))
    if not others:
        raise PlanError("node: %s is the last master serving slots; add a master before removing it" % node.describe())
    if not node.reachable and not allow_data_loss:
        replicas = [r.describe() for r in state.replicas_of(node.id) if r.reachable]
        hint = ("promote its replica first (redisops.cluster.redis_cluster_failover with node: %s and mode: takeover)"
                % replicas[0].split()[0]) if replicas else "it has no reachable replica"
        raise PlanError("node: %s is unreachable and still serves %d slot(s), and no replica has taken over; %s, or "
                        "set allow_data_loss: true to give its slots to the other masters without their keys"
                        % (node.describe(), count_slots(node.entry.slots), hint))


def refuse_short_memory(state: ClusterState, leaving: Node, moves, keys_by_slot: dict) -> None:
    """Every master that receives part of leaving's data has room for it, where maxmemory is set."""
    info = leaving.observation.info if leaving.observation is not None else {}
    keys = leaving.observation.keys if leaving.observation is not None else 0
    data = info.get("used_memory_dataset", info.get("used_memory", 0))
    if not keys or not data:
        return
    short = []
    for target_id in sorted({move.target for move in moves}):
        target = state.by_id[target_id]
        target_info = target.observation.info if target.observation is not None else {}
        limit = target_info.get("maxmemory", 0)
        if not limit:
            continue
        incoming = sum(keys_by_slot.get(slot, 0) for move in moves if move.target == target_id for slot in move.slots)
        needed = data * incoming // keys
        free = limit - target_info.get("used_memory", 0)
        if needed > free:
            short.append("%s would receive %d key(s), about %s, and has %s free (maxmemory %s, used_memory %s)"
                         % (target.describe(), incoming, _size(needed), _size(max(free, 0)), _size(limit),
                            _size(target_info.get("used_memory", 0))))
    if short:
        raise PlanError("node: the other masters have no room for the data of %s: %s; raise their maxmemory or add "
                        "a master first" % (leaving.describe(), "; ".join(short)))


def _size(count: int) -> str:
    return "%.1f MiB" % (count / 1048576.0)


def drain_weights(holdings: dict, node_id: str) -> dict:
    """Weights that move only node_id's slots, each master keeping its share of the rest: weight = its slots."""
    weights = {master: count_slots(ranges) for master, ranges in holdings.items()}
    weights[node_id] = 0
    return weights
