# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Repair plans: every slot gets one serving owner, and every key reaches it. Private to redisops.cluster.

Pure code: no I/O. The plan is decided per slot from the slot-ownership model (_ownership), then laid out in
phases, each a batch of independent writes per node, so that service is restored before any key moves:

1. claims: each chosen owner that does not serve a slot in its own view claims it (ADDSLOTS, or SETSLOT NODE to
   itself when its view names another owner);
2. views: every master whose own view names nobody for a slot is told the owner (a node that sees any slot unserved
   is in cluster_state:fail and refuses MIGRATE and RESTORE);
3. opening: every other holder of a slot's keys that does not claim it imports it (which also keeps its keys when
   the owner's claim reaches it: Redis deletes the keys of a slot a node loses while not importing it);
4. keys: holders send their keys to the owner; a move the old owner had started towards the chosen owner is
   finished by the migration engine (batched hand-over, one epoch bump per batch);
5. closing: losing claimants hand the slot over (they hold no key of it any more), open sides are closed, and every
   master that names another owner is told the chosen one;
6. epochs: each owner that claimed takes a new config epoch last, so its claim beats any stale one;
7. replicas: keys a replica holds of a slot its master does not serve are deleted through the master.

The case table (which owner each state gets, and why) is in docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
from types import MappingProxyType

from ._ownership import SlotOwnership
from ._planner import (
    ADD_SLOTS, BUMP_EPOCH, FAILOVER, FORGET, MIGRATE_SLOTS, MOVE_KEYS, PURGE_KEYS, SETSLOT, WAIT_CONVERGED, Plan,
    PlanError, Step,
)
from ._slots import SLOT_COUNT, count_slots, format_ranges, ranges_from_slots, slots_from_ranges, summarize_ranges
from ._topology import ClusterState, Node, slot_signature, unserved_slots


@dataclasses.dataclass(frozen=True)
class FixOptions:
    forget_failed: bool = False
    allow_unreachable_masters: bool = False


@dataclasses.dataclass(frozen=True)
class SlotRepair:
    """The decision for one slot: its final owner, and the claimant whose started move to it the engine finishes."""

    slot: int
    owner: str
    source: str = ""
    reason: str = ""


class _Repair:
    """The facts one plan is decided from: ownership with key counts, the masters that may own slots, shares."""

    def __init__(self, state: ClusterState, key_counts):
        self.state = state
        self.own = SlotOwnership(state, MappingProxyType({node: MappingProxyType(counts) for node, counts in key_counts.items()}))
        flagged = {entry.id for obs in state.reachable for entry in obs.entries if entry.failed}
        self.serving = tuple(node for node in self.own.masters if node.id not in flagged)
        self.serving_ids = frozenset(node.id for node in self.serving)
        self.load = {node.id: count_slots(node.entry.slots) for node in self.serving}
        self.majority = state.slot_owners

    def node(self, node_id: str) -> Node:
        return self.state.by_id[node_id]

    @functools.cached_property
    def stale(self) -> frozenset:
        return frozenset(_stale_hearsay(self))


def plan_fix(state: ClusterState, key_counts, options: FixOptions = FixOptions()) -> Plan:
    """Give every slot one serving owner and move every key to it; then split config epochs, forget ghosts (opt-in).
    key_counts: {node id: {slot: keys}} for the slots fix_key_count_slots names."""
    repair = _Repair(state, key_counts)
    if not repair.serving:
        raise PlanError("no reachable master to repair the cluster with")
    orphaned = _orphaned_slots(repair)
    steps, promoted = _take_over(repair, orphaned)
    if orphaned and not options.allow_unreachable_masters:
        every_one_has_a_replica = len(promoted) == len(set(orphaned.values()))
        raise PlanError("slots %s are served by unreachable master(s) %s; bring them back or wait for an automatic "
                        "failover, or set allow_unreachable_masters: true to %s"
                        % (format_ranges(ranges_from_slots(orphaned)),
                           ", ".join(sorted({state.label(owner) for owner in orphaned.values()})),
                           "let their replicas take over" if every_one_has_a_replica
                           else "give their slots to reachable masters (the keys they held are lost)"))
    taken_over = {slot for slot, owner in orphaned.items() if owner in promoted}
    decisions = decide(repair, skip=taken_over)
    steps += lay_out(repair, decisions)
    steps += _split_epochs(repair)
    steps += _purge_replica_strays(repair, decisions)
    if options.forget_failed:
        steps += _forget_ghosts(repair, promoted, set(orphaned) - taken_over)
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    return Plan(tuple(steps))


def plan_open_slots(state: ClusterState, key_counts) -> Plan:
    """Finish (or close) the slots an interrupted move left open, as redis_cluster_fix would."""
    repair = _Repair(state, key_counts)
    steps = lay_out(repair, decide(repair, only=set(repair.own.open_slots)))
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    return Plan(tuple(steps))


def fix_key_count_slots(state: ClusterState):
    """For each master observation, the slots whose key counts plan_fix needs: every slot it does not serve (strays,
    uncovered), and every open or contested slot (the owners' keys too)."""
    own = state.ownership
    open_or_contested = set(own.open_slots) | set(own.contested)

    def slots_for(observation) -> list:
        return sorted(set(unserved_slots(observation)) | open_or_contested)

    return slots_for


# --- deciding ------------------------------------------------------------------------------------------------

def decide(repair: _Repair, skip=frozenset(), only=None) -> dict:
    """slot -> SlotRepair for every slot that needs a write (restricted to `only` when given)."""
    own = repair.own
    slots = _slots_needing_repair(repair) if only is None else set(only)
    decisions, keyless = {}, []
    for slot in sorted(slots - set(skip)):
        decision = _decide_slot(repair, slot)
        if decision is None:
            keyless.append(slot)
        else:
            decisions[slot] = decision
    for owner, chunk in _even_fill(repair, keyless):
        for slot in chunk:
            decisions[slot] = SlotRepair(slot, owner.id, reason="no reachable master holds its keys")
    for decision in decisions.values():
        if decision.owner not in own.claims.get(decision.slot, ()):
            repair.load[decision.owner] = repair.load.get(decision.owner, 0) + 1
    return decisions


def _slots_needing_repair(repair: _Repair) -> set:
    own = repair.own
    slots = set(slots_from_ranges(own.uncovered)) | set(own.contested) | set(own.open_slots)
    for node_id, counts in own.key_counts.items():
        slots.update(slot for slot, keys in counts.items() if keys and own.claims.get(slot) != (node_id,))
    slots.update(repair.stale)
    return slots


def _stale_hearsay(repair: _Repair) -> set:
    """Slots some view gives to another node than the one claiming it, where gossip will not correct the view: the
    claimant's epoch does not beat the named owner's (as that view knows them), e.g. after DELSLOTS and ADDSLOTS."""
    own, stale = repair.own, set()
    claims = {slot: ids[0] for slot, ids in own.claims.items() if len(ids) == 1}
    claimed_signature = slot_signature(node.entry for node in own.masters)
    for obs in repair.state.configured:
        if slot_signature(obs.entries) == claimed_signature:
            continue
        epochs = {entry.id: entry.config_epoch for entry in obs.entries}
        for slot, named in own.view(obs.myself.id).items():
            claimant = claims.get(slot)
            if claimant and named != claimant and epochs.get(claimant, 0) <= epochs.get(named, 0):
                stale.add(slot)
    return stale


def _decide_slot(repair: _Repair, slot: int):
    """The owner slot gets (None: no master has a claim or keys on it, so it joins the even fill)."""
    own, serving = repair.own, repair.serving_ids
    claimed = [node_id for node_id in own.claims.get(slot, ()) if node_id in serving]
    sides = own.open_slots.get(slot)
    holders = {node_id: keys for node_id, keys in own.holders(slot).items() if node_id in serving}
    if len(claimed) == 1:
        source = claimed[0]
        target = sides.migrating.get(source, "") if sides is not None else ""
        if target in serving and target != source and (sides.importing.get(target) == source or holders.get(target)):
            return SlotRepair(slot, target, source, "finish the move %s had started" % repair.state.label(source))
        return SlotRepair(slot, source, reason="it serves it")
    if claimed:
        # The claim Redis lets win is the one with the highest epoch: any other owner would lose its own keys
        # to that claim the moment it reached it.
        # On equal epochs Redis gives the node with the smaller id a new epoch, and so the win.
        winner = min(claimed, key=lambda node_id: (-own.epoch(node_id), node_id))
        return SlotRepair(slot, winner, reason="its claim has the highest config epoch")
    if holders:
        owner = max(holders, key=lambda node_id: (holders[node_id], repair.majority.get(slot) == node_id,
                                                  repair.node(node_id).address))
        return SlotRepair(slot, owner, reason="it holds %d of its keys" % holders[owner])
    named = repair.majority.get(slot, "")
    if named in serving:
        return SlotRepair(slot, named, reason="the other nodes name it")
    return None


def _even_fill(repair: _Repair, slots: list) -> list:
    """Give the lightest masters slots until shares are as even as possible; contiguous chunks, deterministic."""
    # A heap keyed as the lightest master orders: thousands of slots over hundreds of masters stay cheap.
    heap = [(repair.load[node.id], node.address, node.id) for node in repair.serving]
    heapq.heapify(heap)
    quota = {}
    for _slot in slots:
        load, address, node_id = heapq.heappop(heap)
        quota[node_id] = quota.get(node_id, 0) + 1
        heapq.heappush(heap, (load + 1, address, node_id))
    chunks, start = [], 0
    for node in sorted((repair.node(node_id) for node_id in quota), key=lambda node: node.address):
        chunks.append((node, slots[start:start + quota[node.id]]))
        start += quota[node.id]
    return chunks


# --- laying out ------------------------------------------------------------------------------------------------

class _Phase:
    """The writes of one phase, grouped per node and kind, so each becomes one step (one pipeline)."""

    def __init__(self):
        self.groups = {}

    def add(self, node_id: str, kind: tuple, slot: int) -> None:
        self.groups.setdefault((node_id, kind), []).append(slot)

    def steps(self, repair: _Repair, make) -> list:
        ordered = sorted(self.groups.items(), key=lambda item: (repair.node(item[0][0]).address, item[0][1]))
        return [make(repair, repair.node(node_id), kind, ranges_from_slots(slots)) for (node_id, kind), slots in ordered]


def lay_out(repair: _Repair, decisions: dict) -> list:
    """The steps that carry out the decisions, phase by phase (see the module's docstring)."""
    own = repair.own
    claims, views, opening, losers, closing, telling = (_Phase() for _phase in range(6))
    key_moves, engine, bumps = [], {}, set()
    for slot, decision in sorted(decisions.items()):
        owner, source = decision.owner, decision.source
        claimed = own.claims.get(slot, ())
        sides = own.open_slots.get(slot)
        importing = sides.importing if sides is not None else {}
        to_close = set(sides.nodes()) if sides is not None else set()
        if source:
            engine.setdefault((source, owner), []).append(slot)
            if importing.get(owner) != source:
                opening.add(owner, ("IMPORTING", source), slot)
        elif owner not in claimed:
            claims.add(owner, ("ADD" if slot not in own.view(owner) else "CLAIM", ""), slot)
        receives = any(holder not in (owner, source) for holder in own.holders(slot))
        if not source and receives and sides is not None and owner in sides.migrating:
            # An owner that migrates the slot answers RESTORE of a key it lacks with ASK: close it first.
            opening.add(owner, ("STABLE", ""), slot)
            to_close.discard(owner)
        for holder, keys in sorted(own.holders(slot).items()):
            if holder in (owner, source):
                continue
            if holder not in claimed and holder not in importing:
                opening.add(holder, ("IMPORTING", owner), slot)
                to_close.add(holder)
            key_moves.append(_move_keys(repair.node(holder), repair.node(owner), slot, keys))
        for loser in set(claimed) - {owner, source}:
            losers.add(loser, ("NODE", owner), slot)
        # A losing claimant is closed by handing the slot over, an owner that imports it by its claim; the engine
        # closes its own pair.
        exempt = set(claimed) - {owner} | ({source, owner} if source else set())
        if sides is None or owner not in sides.migrating or receives:
            exempt.add(owner)
        for node_id in sorted(to_close - exempt):
            closing.add(node_id, ("STABLE", ""), slot)
        if not source:
            for node in own.masters:
                named = own.view(node.id).get(slot, "")
                if named not in ("", owner) and node.id not in claimed and node.id != owner:
                    telling.add(node.id, ("NODE", owner), slot)
            if owner not in claimed or len(claimed) > 1 or slot in repair.stale:
                bumps.add(owner)
    movers = {node_id for step in key_moves for node_id in (step.node_id, step.args[4])}
    movers.update(node_id for pair in engine for node_id in pair)
    _tell_unserved(repair, decisions, movers, views)
    steps = claims.steps(repair, _claim_step)
    steps += views.steps(repair, _setslot_step)
    steps += opening.steps(repair, _setslot_step)
    steps += key_moves
    steps += [_migrate_step(repair, repair.node(source), repair.node(target), slots)
              for (source, target), slots in sorted(engine.items())]
    for phase in (losers, closing, telling):
        steps += phase.steps(repair, _setslot_step)
    steps += [Step(BUMP_EPOCH, repair.node(owner).address, owner, (), "%s: bump its config epoch so its claims win"
                   % repair.state.label(owner)) for owner in sorted(bumps, key=repair.state.label)]
    return steps


def _tell_unserved(repair: _Repair, decisions: dict, movers: set, views: _Phase) -> None:
    """Masters that name nobody for a slot learn its owner before any key moves: a node that sees a slot unserved is
    in cluster_state:fail and refuses MIGRATE and RESTORE, and gossip never fills a slot it imports. Slots whose
    owner stays, on nodes that move no key, are left to gossip (a node that just joined learns them by itself)."""
    own = repair.own
    for node in own.masters:
        view = own.view(node.id)
        importing = {slot for slot, _partner in node.entry.importing}
        for slot in range(SLOT_COUNT):
            if slot in view:
                continue
            decision = decisions.get(slot)
            if decision is not None:
                # The target of a move the engine finishes serves the slot only once it is handed over.
                owner = decision.source if decision.source and decision.owner == node.id else decision.owner
            elif node.id in movers or slot in importing:
                owner = (own.claims.get(slot) or ("",))[0]
            else:
                continue
            if owner and owner != node.id:
                views.add(node.id, ("NODE", owner), slot)


def _slots_text(ranges) -> str:
    count = count_slots(ranges)
    return "slot %s" % format_ranges(ranges) if count == 1 else "%d slots %s" % (count, summarize_ranges(ranges))


def _claim_step(_repair: _Repair, node: Node, kind: tuple, ranges) -> Step:
    if kind[0] == "ADD":
        return Step(ADD_SLOTS, node.address, node.id, tuple(ranges), "%s: add %s" % (node.describe(), _slots_text(ranges)))
    return Step(SETSLOT, node.address, node.id, ("NODE", node.id) + tuple(ranges),
                "%s: claim %s (its view names another owner)" % (node.describe(), _slots_text(ranges)))


def _setslot_step(repair: _Repair, node: Node, kind: tuple, ranges) -> Step:
    how, partner = kind
    words = {"IMPORTING": "import %s from %s", "NODE": "set the owner of %s to %s", "STABLE": "close %s%s"}[how]
    partner_name = repair.state.label(partner) if partner else ""
    return Step(SETSLOT, node.address, node.id, (how, partner) + tuple(ranges),
                "%s: %s" % (node.describe(), words % (_slots_text(ranges), partner_name)))


def _move_keys(source: Node, target: Node, slot: int, count: int) -> Step:
    return Step(MOVE_KEYS, source.address, source.id, (slot, target.address, target.host, target.port, target.id),
                "%s: move %d key(s) of slot %d to %s" % (source.describe(), count, slot, target.describe()))


def _migrate_step(repair: _Repair, source: Node, target: Node, slots: list) -> Step:
    ranges = ranges_from_slots(slots)
    keys = sum(repair.own.count(source.id, slot) for slot in slots)
    # No first slots: a move fix finishes goes to a node that already imports the slot or holds its keys.
    return Step(MIGRATE_SLOTS, source.address, source.id,
                (target.address, target.id, target.host, target.port, ranges, ()),
                "%s: finish moving open %s (%d key(s) left) to %s"
                % (source.describe(), _slots_text(ranges), keys, target.describe()))


# --- unreachable masters, epochs, ghosts --------------------------------------------------------------------------

def _orphaned_slots(repair: _Repair) -> dict:
    """slot -> the unreachable master the majority names, for the slots no reachable master claims."""
    state = repair.state
    return {slot: owner for slot, owner in state.slot_owners.items()
            if slot not in repair.own.claims and owner in state.by_id and not state.by_id[owner].reachable}


def _take_over(repair: _Repair, orphaned: dict) -> tuple:
    """Unreachable masters with a reachable replica: the most up-to-date replica takes over (keeps the keys).
    Returns the steps and {dead master id: promoted replica id}."""
    steps, promoted = [], {}
    for master_id in sorted(set(orphaned.values())):
        replicas = [node for node in repair.state.replicas_of(master_id) if node.reachable]
        if replicas:
            best = max(replicas, key=lambda node: (node.observation.info.get("slave_repl_offset", 0), node.address))
            promoted[master_id] = best.id
            steps.append(Step(FAILOVER, best.address, best.id, ("TAKEOVER", ""), "%s: take over from unreachable master %s"
                              % (best.describe(), repair.state.label(master_id))))
    return steps, promoted


def _split_epochs(repair: _Repair) -> list:
    """Masters sharing a config epoch: all but the one Redis would keep (highest id) take a new epoch."""
    by_epoch = {}
    for node in repair.serving:
        if node.entry.config_epoch:
            by_epoch.setdefault(node.entry.config_epoch, []).append(node)
    steps = []
    for epoch, nodes in sorted(by_epoch.items()):
        for node in sorted(nodes, key=lambda node: node.id)[:-1]:
            steps.append(Step(BUMP_EPOCH, node.address, node.id, (),
                              "%s: take a new config epoch (shares epoch %d)" % (node.describe(), epoch)))
    return steps


def _purge_replica_strays(repair: _Repair, decisions: dict) -> list:
    """Delete, through its master, what a replica holds of slots its master does not serve (foreign_keys of a
    replica's observation): the slots' owners keep their own keys, which clients read; the replica's would come back
    with it as a master. Last: the slots' owners are settled by then."""
    state, steps = repair.state, []
    for obs in state.configured:
        replica = obs.myself
        if replica is None or not replica.is_replica or not obs.foreign_keys:
            continue
        master = repair.node(replica.master_id)
        by_owner = {}
        for slot, _keys in obs.foreign_keys:
            owner = decisions[slot].owner if slot in decisions else repair.majority.get(slot, "")
            if owner and owner != master.id:
                by_owner.setdefault(owner, []).append(slot)
        for owner, slots in sorted(by_owner.items()):
            kept = sum(count for slot, count in obs.foreign_keys if slot in slots)
            ranges = ranges_from_slots(slots)
            description = ("delete the %d key(s) replica %s keeps of slot(s) %s, which its master %s does not serve "
                           "(%s does)" % (kept, state.label(replica.id), format_ranges(ranges),
                                          state.label(master.id), state.label(owner)))
            steps.append(Step(PURGE_KEYS, master.address, master.id, (obs.address.key, owner) + tuple(ranges),
                              description=description))
    return steps


def _forget_ghosts(repair: _Repair, promoted: dict, given_away) -> list:
    """Nodes flagged fail or noaddr that we cannot reach and that serve no slot (once this plan has given their
    slots away): forgotten on every node at once (a replica cannot forget its own master)."""
    state = repair.state
    served = {owner for slot, owner in state.slot_owners.items() if slot not in given_away and owner not in promoted}
    ghosts = [node for node in state.nodes
              if not node.reachable and node.id not in served
              and any(entry.id == node.id and ({"fail", "noaddr"} & entry.flags)
                      for obs in state.reachable for entry in obs.entries)]
    steps = []
    for ghost in ghosts:
        for obs in state.reachable:
            me = state.by_id[obs.myself.id]
            follows_ghost = me.entry.master_id == ghost.id and promoted.get(ghost.id) != me.id
            if not follows_ghost and any(entry.id == ghost.id for entry in obs.entries):
                steps.append(Step(FORGET, me.address, me.id, (ghost.id,),
                                  "%s: forget %s" % (me.describe(), ghost.describe())))
    return steps
