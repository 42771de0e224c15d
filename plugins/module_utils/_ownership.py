# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Slot ownership: who serves each slot, who says so, which side has it open, who holds its keys. Private to redisops.cluster.

A slot is served only by a reachable master that claims it in its own view (its "myself" line); what the other
nodes say is hearsay, which tells who disagrees, not who serves. Facts, fix and the moves' soundness check all read
slots through SlotOwnership. Pure code: no I/O and no Ansible imports.
"""

from __future__ import annotations

import dataclasses
import functools
from types import MappingProxyType

from ._slots import SLOT_COUNT, format_ranges, ranges_from_slots


def owner_map(entries) -> dict:
    """slot -> owner id in one node's view."""
    return {slot: entry.id for entry in entries if entry.is_master
            for first, last in entry.slots for slot in range(first, last + 1)}


@dataclasses.dataclass(frozen=True)
class OpenSides:
    """Who has one slot open: {node id: partner id} for the nodes migrating it and those importing it."""

    migrating: MappingProxyType
    importing: MappingProxyType

    def nodes(self) -> frozenset:
        return frozenset(self.migrating) | frozenset(self.importing)


@dataclasses.dataclass(frozen=True)
class SlotOwnership:
    """The ownership of every slot in one observed ClusterState, with key counts where they were taken.

    key_counts: {node id: {slot: keys}} for the slots counted (a slot not counted on a node reads as 0 keys).
    """

    state: object  # a _topology.ClusterState
    key_counts: MappingProxyType = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    @functools.cached_property
    def masters(self) -> tuple:
        """Reachable masters, by their own view, in address order."""
        return tuple(node for node in self.state.masters if node.reachable and node.entry.is_master)

    @functools.cached_property
    def claims(self) -> MappingProxyType:
        """slot -> ids of the reachable masters that claim it in their own view (address order)."""
        found = {}
        for node in self.masters:
            for first, last in node.entry.slots:
                for slot in range(first, last + 1):
                    found.setdefault(slot, []).append(node.id)
        return MappingProxyType({slot: tuple(ids) for slot, ids in found.items()})

    @functools.cached_property
    def covered(self) -> frozenset:
        return frozenset(self.claims)

    @functools.cached_property
    def uncovered(self) -> tuple:
        """Ranges of the slots no reachable master claims in its own view."""
        return ranges_from_slots(slot for slot in range(SLOT_COUNT) if slot not in self.claims)

    @functools.cached_property
    def contested(self) -> tuple:
        """Slots that two or more reachable masters claim."""
        return tuple(sorted(slot for slot, ids in self.claims.items() if len(ids) > 1))

    @functools.cached_property
    def open_slots(self) -> MappingProxyType:
        """slot -> OpenSides, over the reachable masters' own views."""
        migrating, importing = {}, {}
        for node in self.masters:
            for slot, partner in node.entry.migrating:
                migrating.setdefault(slot, {})[node.id] = partner
            for slot, partner in node.entry.importing:
                importing.setdefault(slot, {})[node.id] = partner
        return MappingProxyType({
            slot: OpenSides(MappingProxyType(migrating.get(slot, {})), MappingProxyType(importing.get(slot, {})))
            for slot in sorted(set(migrating) | set(importing))})

    @functools.cached_property
    def _views(self) -> MappingProxyType:
        """node id -> {slot: owner id} in that reachable node's own view."""
        return MappingProxyType({obs.myself.id: owner_map(obs.entries) for obs in self.state.configured})

    def view(self, node_id: str) -> dict:
        """{slot: owner id} as that node sees it ({} when it was not read)."""
        return self._views.get(node_id, {})

    def named_by(self, slot: int) -> dict:
        """{observer id: the owner it names for slot, '' for nobody} over every configured reachable node."""
        return {observer: view.get(slot, "") for observer, view in self._views.items()}

    def count(self, node_id: str, slot: int) -> int:
        return self.key_counts.get(node_id, {}).get(slot, 0)

    def holders(self, slot: int) -> dict:
        """{master id: keys} for the reachable masters holding keys of slot (as counted)."""
        return {node.id: self.count(node.id, slot) for node in self.masters if self.count(node.id, slot)}

    def epoch(self, node_id: str) -> int:
        node = self.state.by_id.get(node_id)
        return node.entry.config_epoch if node is not None else 0

    def describe(self, slot: int) -> str:
        """What each node says about slot: its claims, the owners the views name, open sides and key holders."""
        label = self.state.label
        claimed = self.claims.get(slot, ())
        parts = ["claimed by %s" % (" and ".join(label(node_id) for node_id in claimed) if claimed else "no reachable master")]
        named = {}
        for observer, owner in self.named_by(slot).items():
            named.setdefault(owner, []).append(observer)
        if len(named) > 1 or (named and set(named) != set(claimed)):
            parts.append("; ".join("%s name%s %s" % (_listed(label, observers), "s" if len(observers) == 1 else "",
                                                     label(owner) if owner else "nobody")
                                   for owner, observers in sorted(named.items())))
        sides = self.open_slots.get(slot)
        if sides is not None:
            parts += ["%s migrates it to %s" % (label(node), label(partner)) for node, partner in sorted(sides.migrating.items())]
            parts += ["%s imports it from %s" % (label(node), label(partner)) for node, partner in sorted(sides.importing.items())]
        holders = self.holders(slot)
        if holders:
            parts.append("keys on %s" % ", ".join("%s (%d)" % (label(node), keys) for node, keys in sorted(holders.items())))
        return "slot %d: %s" % (slot, "; ".join(parts))


def _listed(label, node_ids) -> str:
    node_ids = sorted(node_ids)
    shown = ", ".join(label(node_id) for node_id in node_ids[:3])
    return shown + (" and %d more" % (len(node_ids) - 3) if len(node_ids) > 3 else "")


def slot_ranges_text(slots) -> str:
    return format_ranges(ranges_from_slots(slots))


def never_served(observation, observations) -> tuple:
    """Ranges of the slots observation's node sees served by nobody and will never learn an owner for by gossip:
    nobody claims them in its own view, or the node imports them (an importing slot ignores others' claims)."""
    me = observation.myself
    if me is None:
        return ()
    view = owner_map(observation.entries)
    claimed = set()
    for obs in observations:
        if obs.reachable and obs.myself is not None and obs.myself.is_master:
            claimed.update(slot for first, last in obs.myself.slots for slot in range(first, last + 1))
    importing = {slot for slot, _partner in me.importing}
    return ranges_from_slots(slot for slot in range(SLOT_COUNT)
                             if slot not in view and (slot not in claimed or slot in importing))


def never_settles(observations) -> str:
    """Why these nodes (every node of a cluster, all answering) can never agree by themselves, naming slots and nodes:
    slots no master claims in its own view, or a node that imports a slot another master claims while its view names
    someone else. '' when gossip can still bring them to agreement."""
    if not observations or not all(obs.reachable and obs.myself is not None for obs in observations):
        return ""
    claims, addresses = {}, {obs.myself.id: obs.address.key for obs in observations}
    for obs in observations:
        if obs.myself.is_master:
            for first, last in obs.myself.slots:
                for slot in range(first, last + 1):
                    claims.setdefault(slot, obs.myself.id)
    problems = []
    unclaimed = ranges_from_slots(slot for slot in range(SLOT_COUNT) if slot not in claims)
    if unclaimed:
        problems.append("slot(s) %s are claimed by no master in its own view, and only an owner's own claim spreads"
                        % format_ranges(unclaimed))
    for obs in observations:
        view = owner_map(obs.entries)
        stuck = [slot for slot, _partner in obs.myself.importing if claims.get(slot, view.get(slot)) != view.get(slot)]
        if stuck:
            problems.append("%s imports slot(s) %s, which %s claims, and an importing node never takes a claim"
                            % (obs.address.key, slot_ranges_text(stuck), addresses[claims[stuck[0]]]))
    return "; ".join(problems)
