# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plans: ClusterState + the user's intent -> an ordered list of typed steps. Private to redisops.cluster.

Pure code: no I/O. A plan is printed in check mode, compared for idempotency (empty = no change)
and run by the executor.
"""

from __future__ import annotations

import dataclasses

from ._placement import Candidate, place
from ._slots import SLOT_COUNT, count_slots, format_ranges, ranges_from_slots, slots_from_ranges, summarize_ranges
from ._findings import CRITICAL
from ._topology import ClusterState, Node, TopologyError, format_address, unsettled

# Step actions. Each names one kind of write (or a wait the executor performs between writes).
ADD_SLOTS = "add_slots"
SET_EPOCH = "set_epoch"
MEET = "meet"
REPLICATE = "replicate"
WAIT_CONVERGED = "wait_converged"
# WAIT_SYNCED args: (master id): the replica's link to that master is up and its initial sync is over.
WAIT_SYNCED = "wait_synced"
# Steps that only wait: a plan of nothing else changes nothing.
WAITS = frozenset((WAIT_CONVERGED, WAIT_SYNCED))


# Up to this many nodes, create meets every pair directly.
MESH_LIMIT = 64


class PlanError(TopologyError):
    """The intent cannot be planned on this cluster; the message names the node or option and what to do."""


@dataclasses.dataclass(frozen=True)
class Step:
    action: str
    node: str  # address (host:port) of the node the command goes to; '' for cluster-wide waits
    node_id: str = ""
    args: tuple = ()
    description: str = ""

    def as_dict(self) -> dict:
        return {"action": self.action, "node": self.node, "node_id": self.node_id, "args": list(self.args),
                "description": self.description}


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: tuple = ()
    warnings: tuple = ()

    @property
    def empty(self) -> bool:
        return all(step.action in WAITS for step in self.steps)

    def describe(self) -> list:
        return [step.description for step in self.steps]

    def as_list(self) -> list:
        return [step.as_dict() for step in self.steps]


# --- create --------------------------------------------------------------------------------------

def candidate(node: Node) -> Candidate:
    """The node as placement sees it: its address, and its hostname, rack and zone labels."""
    labels = node.label_map
    return Candidate(key=node.address, host=labels.get("hostname") or node.host,
                     rack=labels.get("rack", ""), zone=labels.get("zone", ""))


def validate_create(state: ClusterState, listed: tuple, replicas: int, min_masters: int) -> None:
    """Refuse, before any write, what create must not touch. listed: the nodes option's addresses."""
    if replicas < 0:
        raise PlanError("replicas must be 0 or more, got %d" % replicas)
    if min_masters < 1:
        raise PlanError("min_masters must be 1 or more, got %d" % min_masters)
    down = [obs.address.key + " (" + obs.error + ")" for obs in state.unreachable]
    if down:
        raise PlanError("cannot reach %s; every node of a new cluster must be up" % ", ".join(down))
    needed = min_masters * (replicas + 1)
    if len(listed) < needed:
        raise PlanError("nodes lists %d node(s); %d master(s) with %d replica(s) each need at least %d"
                        % (len(listed), min_masters, replicas, needed))
    members = {obs.myself.id for obs in state.reachable}
    for obs in state.reachable:
        me = obs.myself
        strangers = [entry for entry in obs.entries if entry.id not in members and "handshake" not in entry.flags]
        if strangers:
            raise PlanError("%s already knows node(s) outside nodes: %s; it belongs to another cluster - "
                            "run CLUSTER RESET on it or list those nodes"
                            % (obs.address.key, ", ".join(format_address(e.host, e.port) for e in strangers)))
        if obs.keys and not me.slots:
            raise PlanError("%s holds %d key(s) but serves no slot; a new cluster starts from empty nodes - "
                            "flush it (FLUSHALL) or leave it out" % (obs.address.key, obs.keys))


def plan_create(state: ClusterState, replicas: int, min_masters: int = 3) -> Plan:
    """Form (or finish forming) a cluster from the observed nodes. Raises PlanError on bad input."""
    validate_create(state, tuple(obs.address for obs in state.observations), replicas, min_masters)
    nodes = {node.id: node for node in state.nodes if node.reachable}
    fixed_masters = tuple(node.address for node in nodes.values() if node.entry.slots)
    if len(fixed_masters) > len(nodes) // (replicas + 1):
        raise PlanError("%d nodes already serve slots, more than the %d master(s) that %d node(s) with %d replica(s) "
                        "each allow; create never demotes a master - lower replicas, or list more nodes"
                        % (len(fixed_masters), len(nodes) // (replicas + 1), len(nodes), replicas))
    fixed_replicas = {node.address: nodes[node.entry.master_id].address for node in nodes.values()
                      if node.entry.is_replica and node.entry.master_id in nodes}
    placement = place([candidate(node) for node in nodes.values()], replicas,
                      fixed_masters=fixed_masters, fixed_replicas=fixed_replicas)
    if len(placement.masters) < min_masters:
        raise PlanError("placement yields %d master(s), fewer than min_masters %d" % (len(placement.masters), min_masters))
    by_address = {node.address: node for node in nodes.values()}
    # Slots first, then join: each master then counts itself a majority of a one-master cluster; a master
    # that saw no slot served anywhere counts itself in a minority, and once the slots appear it holds
    # cluster_state:fail for a rejoin delay (the node timeout, up to 5 s).
    steps = list(_slot_steps(state, [by_address[key] for key in placement.masters]))
    steps += _join_steps(state, list(nodes.values()))
    attaching = [(by_address[replica], by_address[master]) for replica, master in placement.replicas
                 if by_address[replica].entry.master_id != by_address[master].id]
    steps.extend(replicate_step(replica, master) for replica, master in attaching)
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    # A replica still in its first sync holds no data and never stands for election: until it is over, the loss
    # of its master would leave its slots unserved.
    steps.extend(synced_step(replica, master) for replica, master in attaching)
    return Plan(tuple(steps), warnings=placement.unmet)


def _slot_steps(state: ClusterState, masters: list):
    covered = set(state.slot_owners) | {slot for node in masters for first, last in node.entry.slots
                                        for slot in range(first, last + 1)}
    uncovered = [slot for slot in range(SLOT_COUNT) if slot not in covered]
    if not uncovered:
        return
    empty = [node for node in masters if not node.entry.slots]
    for node, slots in _share_out(uncovered, empty or masters):
        ranges = ranges_from_slots(slots)
        yield Step(ADD_SLOTS, node.address, node.id, tuple(ranges),
                   "%s: add %d slot(s) %s" % (node.describe(), count_slots(ranges), format_ranges(ranges)))


def _share_out(slots: list, masters: list):
    """Contiguous chunks of slots, as even as possible across masters (first masters get the extra slot)."""
    total = len(slots)
    for index, node in enumerate(masters):
        chunk = slots[index * total // len(masters):(index + 1) * total // len(masters)]
        if chunk:
            yield node, chunk


def _join_steps(state: ClusterState, nodes: list) -> list:
    """Distinct epochs for fresh nodes, then the MEETs that let every node know every other (REPLICATE
    retries until its master is known, and the final wait checks that all agree)."""
    steps = []
    fresh = [node for node in nodes if node.observation.unconfigured and node.entry.config_epoch == 0]
    used = {node.entry.config_epoch for node in nodes}
    epoch = 0
    for node in fresh:
        epoch += 1
        while epoch in used:
            epoch += 1
        steps.append(Step(SET_EPOCH, node.address, node.id, (epoch,),
                          "%s: set config epoch %d" % (node.describe(), epoch)))
    # Small clusters meet as a full mesh: every pair handshakes at once instead of waiting for gossip to
    # spread the member list (seconds); large ones meet one hub and let gossip do the rest.
    partners = (lambda index: nodes[index + 1:]) if len(nodes) <= MESH_LIMIT else (lambda index: nodes[:1] if index else [])
    meets = []
    for index, node in enumerate(nodes):
        knows = {entry.id for entry in node.observation.entries}
        for other in partners(index):
            other_knows = {entry.id for entry in other.observation.entries}
            if other.id not in knows and node.id not in other_knows:
                meets.append(Step(MEET, node.address, node.id, (other.host, other.port, other.entry.bus_port),
                                  "%s: meet %s (bus port %d)" % (node.describe(), other.describe(), other.entry.bus_port)))
    steps.extend(meets)
    return steps


def replicate_step(replica: Node, master: Node) -> Step:
    return Step(REPLICATE, replica.address, replica.id, (master.id,),
                "%s: replicate %s" % (replica.describe(), master.describe()))


def synced_step(replica: Node, master: Node) -> Step:
    """Wait until replica's link to master is up and its first sync is over."""
    return Step(WAIT_SYNCED, replica.address, replica.id, (master.id,),
                "wait until %s has synced with %s" % (replica.describe(), master.describe()))


# --- repair steps (planned by _repair) -------------------------------------------------------------

# SETSLOT args: (subcommand, partner id or '', (first, last) ranges...): one pipeline per step.
SETSLOT = "setslot"
MOVE_KEYS = "move_keys"
BUMP_EPOCH = "bump_epoch"
FORGET = "forget"
# FAILOVER args: (mode: '' | 'FORCE' | 'TAKEOVER', address of the master it replaces, '' when unreachable).
FAILOVER = "failover"
# PURGE_KEYS, on a master, args: (its replica's address, owner id, (first, last) ranges...): the keys the replica
# holds in those slots, which the master does not serve, are deleted through the master.
PURGE_KEYS = "purge_keys"


# --- node lifecycle (planned by the node and failover backends) --------------------------------------

# REMOVE_NODE args: (node id, its address or '' when unreachable): every other node forgets it, again whenever
# gossip brings it back; a reachable one is then reset (CLUSTER RESET HARD) so it forgets the cluster and takes a new
# id.
REMOVE_NODE = "remove_node"
# NO_FAILOVER: the node (a master being drained to leave) may not be elected while it leaves: once its last slot is
# gone Redis makes it a replica of the master that took it, and a failover of that master could promote it.
NO_FAILOVER = "no_failover"


# --- moving slots (rebalance, reshard) ---------------------------------------------------------------

MIGRATE_SLOTS = "migrate_slots"

# Findings that make a cluster unsound for moving slots: fix it first.
UNSOUND = ("uncovered_slots", "multiple_owners", "node_unreachable")
# Unsound only when critical: a node flagged failing by some only (fail?), or one still learning slot owners, comes
# right by itself, and the moves wait for it (plan_moves).
UNSOUND_WHEN_CRITICAL = ("node_failing", "inconsistent_config")


def refuse_unsound(state: ClusterState, findings) -> None:
    """Moves start only from a sound cluster (open slots aside: those are finished first)."""
    problems = [finding.message for finding in findings if finding.kind in UNSOUND
                or (finding.kind in UNSOUND_WHEN_CRITICAL and finding.severity == CRITICAL)]
    if problems:
        raise PlanError("the cluster is not sound enough to move slots (%s); repair it with "
                        "redisops.cluster.redis_cluster_fix first" % "; ".join(problems))


def handed_over(plan: Plan) -> dict:
    """slot -> the node id that plan's SETSLOT NODE and MIGRATE_SLOTS steps hand it to."""
    owners = {}
    for step in plan.steps:
        if step.action == SETSLOT and step.args[0] == "NODE":
            owners.update((slot, step.args[1]) for slot in slots_from_ranges(step.args[2:]))
        elif step.action == MIGRATE_SLOTS:
            owners.update((slot, step.args[1]) for slot in slots_from_ranges(step.args[4]))
    return owners


# A master that serves no slot is missing from CLUSTER SLOTS, so clients do not know it, and some raise on an ASK
# towards it (redis-py through 8.1: redis/redis-py#4015). Its first slots go over without ASK (the executor hands them
# over without opening them): every slot of its moves that holds no key, and the FIRST_SLOTS lightest others. Clients
# meet it through MOVED only on slots they use, which the empty ones are not; a client spread over the slots in use
# meets it after about 16384 / (FIRST_SLOTS x its commands per second) seconds.
FIRST_SLOTS = 64


def plan_moves(state: ClusterState, moves, key_counts, client_grace: float = 0.0) -> Plan:
    """One MIGRATE_SLOTS step per (source, target) move; key_counts: {node id: {slot: keys}}.

    A move's args end with its first slots, (ranges holding no key, ranges of the lightest others, client_grace),
    when its target serves no slot: the executor hands every target its first slots before any move runs at full
    speed."""
    # A master that just joined refuses keys (CLUSTERDOWN) until its rejoin delay is over: start from a settled
    # cluster, waiting first only when the nodes were not settled when observed.
    unsettled_now = unsettled(state.reachable)
    steps = [Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots (now: %s)"
                  % unsettled_now)] if moves and unsettled_now else []
    firsts = _first_slots(state, moves, key_counts)
    for move in moves:
        source, target = state.by_id[move.source], state.by_id[move.target]
        slots = tuple(sorted(move.slots))
        keys = sum(key_counts.get(source.id, {}).get(slot, 0) for slot in slots)
        ranges = ranges_from_slots(slots)
        direct, keyed = firsts.get((source.id, target.id), ((), ()))
        first = (ranges_from_slots(direct), ranges_from_slots(keyed), client_grace) if direct or keyed else ()
        steps.append(Step(MIGRATE_SLOTS, source.address, source.id,
                          (target.address, target.id, target.host, target.port, ranges, first),
                          "%s: move %d slot(s) %s (%d key(s)) to %s%s"
                          % (source.describe(), len(slots), summarize_ranges(ranges), keys, target.describe(),
                             _first_note(direct, keyed, client_grace))))
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    return Plan(tuple(steps))


def _first_slots(state: ClusterState, moves, key_counts) -> dict:
    """(source id, target id) -> (its slots that hold no key, its slots among the FIRST_SLOTS lightest others) for
    the moves onto targets that serve no slot."""
    firsts = {}
    for target_id in sorted({move.target for move in moves}):
        if state.by_id[target_id].entry.slots:
            continue
        candidates = sorted((key_counts.get(move.source, {}).get(slot, 0), slot, move.source)
                            for move in moves if move.target == target_id for slot in move.slots)
        empty = [(slot, source) for keys, slot, source in candidates if not keys]
        keyed = [(slot, source) for keys, slot, source in candidates if keys][:FIRST_SLOTS]
        for source in {source for _keys, _slot, source in candidates}:
            firsts[(source, target_id)] = (tuple(sorted(slot for slot, owner in empty if owner == source)),
                                           tuple(sorted(slot for slot, owner in keyed if owner == source)))
    return firsts


def _first_note(direct, keyed, client_grace: float) -> str:
    if not direct and not keyed:
        return ""
    what = ["%d that hold no key (%s)" % (len(direct), summarize_ranges(ranges_from_slots(direct)))] if direct else []
    if keyed:
        what.append("the %d lightest others (%s)" % (len(keyed), summarize_ranges(ranges_from_slots(keyed))))
    wait = ("then more the same way until every client at work, if any, has met it through MOVED, for %g s at most "
            "(client_grace)" % client_grace if client_grace else "no time for clients to learn it (client_grace 0)")
    return ("; it serves no slot yet, so clients are to meet it through MOVED first: %s go over without opening them "
            "while writes on the source wait, %s, then the rest at full speed" % (" and ".join(what), wait))
