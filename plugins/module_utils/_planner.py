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
import heapq

from ._placement import Candidate, place
from ._slots import SLOT_COUNT, count_slots, format_ranges, ranges_from_slots, summarize_ranges
from ._topology import CRITICAL, ClusterState, Node, TopologyError, format_address, owner_map, unserved_slots, unsettled

# Step actions. Each names one kind of write (or a wait the executor performs between writes).
ADD_SLOTS = "add_slots"
SET_EPOCH = "set_epoch"
MEET = "meet"
REPLICATE = "replicate"
WAIT_CONVERGED = "wait_converged"


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
        return not any(step.action != WAIT_CONVERGED for step in self.steps)

    def describe(self) -> list:
        return [step.description for step in self.steps]

    def as_list(self) -> list:
        return [step.as_dict() for step in self.steps]


# --- create --------------------------------------------------------------------------------------

def _candidate(node: Node) -> Candidate:
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
    placement = place([_candidate(node) for node in nodes.values()], replicas,
                      fixed_masters=fixed_masters, fixed_replicas=fixed_replicas)
    if len(placement.masters) < min_masters:
        raise PlanError("placement yields %d master(s), fewer than min_masters %d" % (len(placement.masters), min_masters))
    by_address = {node.address: node for node in nodes.values()}
    # Slots first, then join: each master then counts itself a majority of a one-master cluster; a master
    # that saw no slot served anywhere counts itself in a minority, and once the slots appear it holds
    # cluster_state:fail for a rejoin delay (the node timeout, up to 5 s).
    steps = list(_slot_steps(state, [by_address[key] for key in placement.masters]))
    steps += _join_steps(state, list(nodes.values()))
    replicate = [_replicate_step(by_address[replica], by_address[master])
                 for replica, master in placement.replicas
                 if by_address[replica].entry.master_id != by_address[master].id]
    if replicate:
        steps.extend(replicate)
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
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


def _replicate_step(replica: Node, master: Node) -> Step:
    return Step(REPLICATE, replica.address, replica.id, (master.id,),
                "%s: replicate %s" % (replica.describe(), master.describe()))


# --- fix -----------------------------------------------------------------------------------------

SETSLOT = "setslot"
MOVE_KEYS = "move_keys"
BUMP_EPOCH = "bump_epoch"
FORGET = "forget"
FAILOVER = "failover_takeover"
CLAIM_SLOTS = "claim_slots"


@dataclasses.dataclass(frozen=True)
class FixOptions:
    forget_failed: bool = False
    allow_unreachable_masters: bool = False


def _setslot(node: Node, slot: int, how: str, other: Node = None) -> Step:
    args = (slot, how.upper()) + ((other.id,) if other is not None else ())
    words = {"importing": "import slot %d from %s", "migrating": "migrate slot %d to %s",
             "node": "hand slot %d to %s", "stable": "close slot %d%s"}[how]
    return Step(SETSLOT, node.address, node.id, args,
                "%s: %s" % (node.describe(), words % (slot, other.describe() if other is not None else "")))


def _pull_keys(ctx: _FixContext, node: Node, final: Node, slot: int, count: int, is_open: bool) -> list:
    """Steps that move node's keys of slot to final. MIGRATE runs only where the slot is open and has an owner
    in the node's own view, so the slot gets an owner there (in ctx.view_owners, which run before any key moves:
    a node that sees any slot without an owner refuses every MIGRATE with CLUSTERDOWN) and is opened if it is not."""
    steps = []
    owner_in_view = owner_map(node.observation.entries).get(slot)
    if owner_in_view is None:
        ctx.view_owners.append(_setslot(node, slot, "node", final))
    if not is_open:
        steps.append(_setslot(node, slot, "migrating" if owner_in_view == node.id else "importing", final))
    steps.append(_move_keys(node, final, slot, count))
    return steps


def _move_keys(source: Node, target: Node, slot: int, count: int) -> Step:
    return Step(MOVE_KEYS, source.address, source.id, (slot, target.address, target.host, target.port),
                "%s: move %d key(s) of slot %d to %s" % (source.describe(), count, slot, target.describe()))


class _FixContext:
    """What the fix planner consults: the state, key counts per (node, slot), and slot counts as planned so far."""

    def __init__(self, state: ClusterState, key_counts):
        self.state = state
        self.keys = key_counts
        self.masters = [node for node in state.masters if node.reachable and not node.entry.failed]
        self.load = {node.id: count_slots(node.entry.slots) for node in self.masters}
        self.view_owners = []  # SETSLOT NODE steps that give key holders an owner in view, before any key moves

    def count(self, node: Node, slot: int) -> int:
        return self.keys.get(node.id, {}).get(slot, 0)

    def holders(self, slot: int) -> list:
        return [node for node in self.masters if self.count(node, slot) > 0]

    def lightest(self) -> Node:
        return min(self.masters, key=lambda node: (self.load[node.id], node.address))


def plan_fix(state: ClusterState, key_counts, options: FixOptions = FixOptions()) -> Plan:
    """Repair open slots, uncovered slots, multiple owners, epoch collisions and (opt-in) ghost nodes."""
    ctx = _FixContext(state, key_counts)
    if not ctx.masters:
        raise PlanError("no reachable master to repair the cluster with")
    orphaned = _orphaned_slots(state)
    steps, promoted = _take_over(ctx, orphaned)
    if orphaned and not options.allow_unreachable_masters:
        raise PlanError("slots %s are served by unreachable master(s) %s; bring them back or wait for an automatic "
                        "failover, or set allow_unreachable_masters: true to %s"
                        % (format_ranges(ranges_from_slots(orphaned)),
                           ", ".join(sorted({state.label(state.slot_owners[slot]) for slot in orphaned})),
                           "let their replicas take over" if len(promoted) == len({state.slot_owners[s] for s in orphaned})
                           else "give their slots to reachable masters (the keys they held are lost)"))
    orphaned = [slot for slot in orphaned if state.slot_owners[slot] not in promoted]
    open_slots = _open_slot_map(ctx)
    closing = []
    for slot in sorted(open_slots):
        closing += _close_open_slot(ctx, slot, open_slots[slot])
    uncovered = [slot for slot in range(SLOT_COUNT)
                 if (slot not in state.slot_owners or slot in orphaned) and slot not in open_slots]
    owners, pulls = _cover_slots(ctx, uncovered)
    later = (_reclaim(ctx, set(open_slots)) + _settle_claims(ctx, set(open_slots))
             + _return_stray_keys(ctx, set(open_slots) | set(uncovered)))
    # Every slot has an owner in every view that moves keys before the first MIGRATE: a node that sees any slot
    # without an owner refuses all of them (CLUSTERDOWN), and gossip never fills a slot it imports.
    steps += ctx.view_owners + owners + closing + pulls + later
    steps += _split_epochs(ctx)
    if options.forget_failed:
        steps += _forget_ghosts(ctx, set(orphaned) | {slot for slot, owner in state.slot_owners.items() if owner in promoted},
                                promoted)
    steps = _last_bump_only(steps)
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    return Plan(tuple(steps))


def fix_key_count_slots(state: ClusterState):
    """For each master observation, the slots whose key counts plan_fix needs: every slot it does not
    serve (strays, uncovered), and every open or contested slot (owners' keys too)."""
    open_or_contested = set()
    claims = {}
    for node in state.masters:
        if node.reachable:
            open_or_contested.update(slot for slot, _partner in node.entry.migrating + node.entry.importing)
            for first, last in node.entry.slots:
                for slot in range(first, last + 1):
                    claims[slot] = claims.get(slot, 0) + 1
    open_or_contested.update(slot for slot, claimants in claims.items() if claimants > 1)

    def slots_for(observation) -> list:
        return sorted(set(unserved_slots(observation)) | open_or_contested)

    return slots_for


def _last_bump_only(steps: list) -> list:
    """One config epoch bump per node, after all of that node's claims."""
    last = {step.node: index for index, step in enumerate(steps) if step.action == BUMP_EPOCH}
    return [step for index, step in enumerate(steps) if step.action != BUMP_EPOCH or last[step.node] == index]


def _take_over(ctx: _FixContext, orphaned) -> tuple:
    """Unreachable masters with a reachable replica: the most up-to-date replica takes over (keeps the keys).
    Returns the steps and {dead master id: promoted replica id}."""
    steps, promoted = [], {}
    for master_id in sorted({ctx.state.slot_owners[slot] for slot in orphaned}):
        replicas = [node for node in ctx.state.replicas_of(master_id) if node.reachable]
        if replicas:
            best = max(replicas, key=lambda node: (node.observation.info.get("slave_repl_offset", 0), node.address))
            promoted[master_id] = best.id
            steps.append(Step(FAILOVER, best.address, best.id, (), "%s: take over from unreachable master %s"
                              % (best.describe(), ctx.state.label(master_id))))
    return steps, promoted


def _orphaned_slots(state: ClusterState) -> list:
    return sorted(slot for slot, owner in state.slot_owners.items()
                  if owner in state.by_id and not state.by_id[owner].reachable)


def _open_slot_map(ctx: _FixContext) -> dict:
    """slot -> {'migrating': {node id: target id}, 'importing': {node id: source id}} over reachable masters."""
    found = {}
    for node in ctx.masters:
        for slot, partner in node.entry.migrating:
            found.setdefault(slot, {"migrating": {}, "importing": {}})["migrating"][node.id] = partner
        for slot, partner in node.entry.importing:
            found.setdefault(slot, {"migrating": {}, "importing": {}})["importing"][node.id] = partner
    return found


def _close_open_slot(ctx: _FixContext, slot: int, sides: dict) -> list:
    """Finish the move when both sides agree (or keys already left), else close the slot where it is."""
    state, nodes = ctx.state, ctx.state.by_id
    owner = nodes.get(state.slot_owners.get(slot))
    if owner is None or not owner.reachable:
        holders = ctx.holders(slot)
        owner = max(holders, key=lambda node: (ctx.count(node, slot), node.address)) if holders else ctx.lightest()
        ctx.load[owner.id] += 1
        steps = _take(owner, [slot], "its owner is gone")
        final = owner
    else:
        steps = []
        final = owner
        target = nodes.get(sides["migrating"].get(owner.id, ""))
        if target is not None and target.reachable and target.role == "master":
            target_agrees = sides["importing"].get(target.id) == owner.id
            if target_agrees or ctx.count(target, slot) > 0:
                final = target
    opened = set(sides["migrating"]) | set(sides["importing"])
    if final is not owner:
        if sides["importing"].get(final.id) != owner.id:
            steps.append(_setslot(final, slot, "importing", owner))
        if sides["migrating"].get(owner.id) != final.id:
            steps.append(_setslot(owner, slot, "migrating", final))
        opened |= {final.id, owner.id}
    for node in ctx.masters:
        if node is final or ctx.count(node, slot) == 0:
            continue
        steps += _pull_keys(ctx, node, final, slot, ctx.count(node, slot), node.id in opened)
        opened.add(node.id)
    if final is not owner:
        steps += [_setslot(node, slot, "stable") for node in _by_address(ctx, opened - {final.id, owner.id})]
        steps.append(_setslot(final, slot, "node", final))
        steps.append(_setslot(owner, slot, "node", final))
        steps += [_setslot(node, slot, "node", final) for node in ctx.masters if node.id not in (final.id, owner.id)]
    else:
        steps += [_setslot(node, slot, "stable") for node in _by_address(ctx, opened)]
    return steps


def _by_address(ctx: _FixContext, ids) -> list:
    return sorted((ctx.state.by_id[node_id] for node_id in ids), key=lambda node: node.address)


def _take(owner: Node, slots, why: str) -> list:
    """owner starts serving slots: ADDSLOTS where its view has no owner, SETSLOT NODE where it names another;
    then a new config epoch, so its claim wins over any stale one in other views."""
    own_view = owner_map(owner.observation.entries)
    free = [slot for slot in slots if slot not in own_view]
    taken = [slot for slot in slots if slot in own_view]
    steps = []
    if free:
        ranges = ranges_from_slots(free)
        steps.append(Step(ADD_SLOTS, owner.address, owner.id, ranges, "%s: add %d slot(s) %s (%s)"
                          % (owner.describe(), len(free), format_ranges(ranges), why)))
    if taken:
        ranges = ranges_from_slots(taken)
        steps.append(Step(CLAIM_SLOTS, owner.address, owner.id, ranges, "%s: claim %d slot(s) %s (%s)"
                          % (owner.describe(), len(taken), format_ranges(ranges), why)))
    steps.append(Step(BUMP_EPOCH, owner.address, owner.id, (), "%s: bump its config epoch so its claim wins"
                      % owner.describe()))
    return steps


def _cover_slots(ctx: _FixContext, slots: list) -> tuple:
    """Uncovered slots: to the master holding most of their keys, else to keep the shares even. (steps that give
    every slot its owner, steps that then move keys): a node refuses MIGRATE while any slot is uncovered."""
    steps, pulls, keyless = [], [], []
    for slot in slots:
        holders = ctx.holders(slot)
        if not holders:
            keyless.append(slot)
            continue
        owner = max(holders, key=lambda node: (ctx.count(node, slot), node.address))
        ctx.load[owner.id] += 1
        steps += _take(owner, [slot], "it holds %d of its keys" % ctx.count(owner, slot))
        for node in holders:
            if node is not owner:
                pulls += _pull_keys(ctx, node, owner, slot, ctx.count(node, slot), False) + [_setslot(node, slot, "stable")]
    for owner, chunk in _even_fill(ctx, keyless):
        steps += _take(owner, chunk, "no reachable master holds keys in them")
    return steps, pulls


def _reclaim(ctx: _FixContext, skip) -> list:
    """Slots every other view gives to a master whose own view lost them (e.g. DELSLOTS on the owner only)."""
    steps = []
    for node in ctx.masters:
        own = owner_map(node.observation.entries)
        lost = [slot for slot, owner in sorted(ctx.state.slot_owners.items())
                if owner == node.id and own.get(slot) != node.id and slot not in skip]
        if lost:
            steps += _take(node, lost, "the other nodes say it serves them")
    return steps


def _even_fill(ctx: _FixContext, slots: list) -> list:
    """Give the lightest masters slots until shares are as even as possible; contiguous chunks, deterministic."""
    # A heap keyed as lightest() orders: thousands of slots over hundreds of masters stay cheap.
    heap = [(ctx.load[node.id], node.address, node.id) for node in ctx.masters]
    heapq.heapify(heap)
    quota = {}
    for _slot in slots:
        load, address, node_id = heapq.heappop(heap)
        quota[node_id] = quota.get(node_id, 0) + 1
        heapq.heappush(heap, (load + 1, address, node_id))
    for node_id, extra in quota.items():
        ctx.load[node_id] += extra
    chunks, start = [], 0
    for node in sorted((ctx.state.by_id[node_id] for node_id in quota), key=lambda node: node.address):
        chunks.append((node, slots[start:start + quota[node.id]]))
        start += quota[node.id]
    return chunks


def _settle_claims(ctx: _FixContext, skip) -> list:
    """Slots two reachable masters each claim: keep the majority view's owner, move the others' keys to it."""
    claims = {}
    for node in ctx.masters:
        for first, last in node.entry.slots:
            for slot in range(first, last + 1):
                claims.setdefault(slot, []).append(node)
    steps, bumped = [], set()
    for slot in sorted(s for s, claimants in claims.items() if len(claimants) > 1 and s not in skip):
        claimants = claims[slot]
        winner = ctx.state.by_id.get(ctx.state.slot_owners.get(slot))
        if winner not in claimants:
            winner = max(claimants, key=lambda node: (ctx.count(node, slot), node.address))
        for loser in claimants:
            if loser is winner:
                continue
            if ctx.count(loser, slot):
                steps += [_setslot(loser, slot, "migrating", winner), _move_keys(loser, winner, slot, ctx.count(loser, slot))]
            steps.append(_setslot(loser, slot, "node", winner))
        if winner.id not in bumped:
            bumped.add(winner.id)
            steps.append(Step(BUMP_EPOCH, winner.address, winner.id, (),
                              "%s: bump its config epoch so its claims win" % winner.describe()))
    return steps


def _return_stray_keys(ctx: _FixContext, skip) -> list:
    """Keys a master holds in a slot another master serves: back to the owner."""
    steps = []
    for node in ctx.masters:
        own = {slot for first, last in node.entry.slots for slot in range(first, last + 1)}
        for slot, count in sorted(ctx.keys.get(node.id, {}).items()):
            owner = ctx.state.by_id.get(ctx.state.slot_owners.get(slot))
            if count and slot not in own and slot not in skip and owner is not None and owner.reachable:
                steps += _pull_keys(ctx, node, owner, slot, count, False) + [_setslot(node, slot, "stable")]
    return steps


def _split_epochs(ctx: _FixContext) -> list:
    """Masters sharing a config epoch: all but the one Redis would keep (highest id) take a new epoch."""
    by_epoch = {}
    for node in ctx.masters:
        if node.entry.config_epoch:
            by_epoch.setdefault(node.entry.config_epoch, []).append(node)
    steps = []
    for epoch, nodes in sorted(by_epoch.items()):
        for node in sorted(nodes, key=lambda node: node.id)[:-1]:
            steps.append(Step(BUMP_EPOCH, node.address, node.id, (),
                              "%s: take a new config epoch (shares epoch %d)" % (node.describe(), epoch)))
    return steps


def _forget_ghosts(ctx: _FixContext, given_away, promoted) -> list:
    """Nodes flagged fail or noaddr that we cannot reach and that serve no slot (once this plan has given
    their slots away): forgotten on every node at once (a replica cannot forget its own master)."""
    state = ctx.state
    served = {owner for slot, owner in state.slot_owners.items() if slot not in given_away}
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


def plan_open_slots(state: ClusterState, key_counts) -> Plan:
    """Finish (or close) the slots an interrupted move left open, as redis_cluster_fix would."""
    ctx = _FixContext(state, key_counts)
    open_slots = _open_slot_map(ctx)
    steps = [step for slot in sorted(open_slots) for step in _close_open_slot(ctx, slot, open_slots[slot])]
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    return Plan(tuple(steps))


def handed_over(plan: Plan) -> dict:
    """slot -> the node id that plan's SETSLOT NODE steps hand it to."""
    return {step.args[0]: step.args[2] for step in plan.steps if step.action == SETSLOT and step.args[1] == "NODE"}


# A master that serves no slot is missing from CLUSTER SLOTS, so clients do not know it, and some raise on an ASK
# towards it (redis-py through 8.1: redis/redis-py#4015). Its first slots go over without ASK: every slot of its moves
# that holds no key, directly, and as many of the lightest others, one at a time, as make FIRST_SLOTS; clients meet it
# through MOVED when they use one of them, which for a client spread over all slots takes about
# 16384 / (FIRST_SLOTS x its commands per second) seconds.
FIRST_SLOTS = 64


def plan_moves(state: ClusterState, moves, key_counts, client_grace: float = 0.0) -> Plan:
    """One MIGRATE_SLOTS step per (source, target) move; key_counts: {node id: {slot: keys}}.

    A move's args end with its first slots, (direct ranges, one-at-a-time ranges, client_grace), when its target
    serves no slot: the executor hands every target its first slots before any move runs at full speed."""
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
        direct, one_by_one = firsts.get((source.id, target.id), ((), ()))
        first = (ranges_from_slots(direct), ranges_from_slots(one_by_one), client_grace) if direct or one_by_one else ()
        steps.append(Step(MIGRATE_SLOTS, source.address, source.id,
                          (target.address, target.id, target.host, target.port, ranges, first),
                          "%s: move %d slot(s) %s (%d key(s)) to %s%s"
                          % (source.describe(), len(slots), summarize_ranges(ranges), keys, target.describe(),
                             _first_note(direct, one_by_one, client_grace))))
    if steps:
        steps.append(Step(WAIT_CONVERGED, "", description="wait until every node agrees on roles and slots"))
    return Plan(tuple(steps))


def _first_slots(state: ClusterState, moves, key_counts) -> dict:
    """(source id, target id) -> (slots handed over directly, slots moved one at a time) for the moves onto targets
    that serve no slot: every slot of theirs that holds no key, and the lightest others up to FIRST_SLOTS."""
    firsts = {}
    for target_id in sorted({move.target for move in moves}):
        if state.by_id[target_id].entry.slots:
            continue
        candidates = sorted((key_counts.get(move.source, {}).get(slot, 0), slot, move.source)
                            for move in moves if move.target == target_id for slot in move.slots)
        empty = [(slot, source) for keys, slot, source in candidates if not keys]
        keyed = [(slot, source) for keys, slot, source in candidates if keys][:max(0, FIRST_SLOTS - len(empty))]
        for source in {source for _keys, _slot, source in candidates}:
            firsts[(source, target_id)] = (tuple(sorted(slot for slot, owner in empty if owner == source)),
                                           tuple(sorted(slot for slot, owner in keyed if owner == source)))
    return firsts


def _first_note(direct, one_by_one, client_grace: float) -> str:
    if not direct and not one_by_one:
        return ""
    how = ["%d that hold no key handed over directly (%s)" % (len(direct), summarize_ranges(ranges_from_slots(direct)))
           ] if direct else []
    if one_by_one:
        how.append("%d moved one at a time (%s)" % (len(one_by_one), summarize_ranges(ranges_from_slots(one_by_one))))
    wait = ("then for %g s (client_grace), while clients at work, if any, learn it through MOVED, one slot at a "
            "time" % client_grace if client_grace else "no time for clients to learn it (client_grace 0)")
    return ("; it serves no slot yet, so clients are to meet it through MOVED first: %s; %s, then the rest at full "
            "speed" % (" and ".join(how), wait))
