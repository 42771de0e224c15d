# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health findings of an observed cluster, and its overall state. Private to redisops.cluster.

Pure code: no I/O and no Ansible imports, so the agent and plain scripts can use it.
"""

from __future__ import annotations

import dataclasses

from ._ownership import owner_map
from ._slots import SLOT_COUNT, count_slots, format_ranges, ranges_from_slots
from ._topology import LABEL_KEYS, ClusterState, slot_signature

# Severities, most serious first.
CRITICAL = "critical"
WARNING = "warning"
INFO = "info"


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    message: str
    nodes: tuple = ()
    slots: tuple = ()  # ranges

    def as_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "nodes": list(self.nodes), "slots": [list(r) for r in self.slots]}


def assess(state: ClusterState, imbalance_threshold: float = 2.0) -> tuple:
    """Health findings of a state, most serious first, in a stable order."""
    if state.not_configured:
        return ()
    checks = (_unreachable, _failing, _unjoined, _inconsistent, _uncovered, _multiple_owners, _foreign_keys,
              _open_slots, _without_replica, _anti_affinity)
    findings = [finding for check in checks for finding in check(state)]
    findings.extend(_imbalance(state, imbalance_threshold))
    order = {CRITICAL: 0, WARNING: 1, INFO: 2}
    return tuple(sorted(findings, key=lambda f: order[f.severity]))


def _unreachable(state: ClusterState):
    for obs in state.unreachable:
        node = next((n for n in state.nodes if n.observation is obs), None)
        serving = node is not None and node.role == "master" and node.entry.slots
        yield Finding("node_unreachable", CRITICAL if serving else WARNING,
                      "%s cannot be reached: %s" % (node.describe() if node else obs.address.key, obs.error),
                      nodes=(node.id,) if node else ())


def _failing(state: ClusterState):
    flagged = {}
    for obs in state.reachable:
        for entry in obs.entries:
            if entry.failed or entry.possibly_failed:
                verdict = "fail" if entry.failed else "fail?"
                flagged.setdefault(entry.id, {}).setdefault(verdict, []).append(obs.address.key)
    for node_id in sorted(flagged):
        node = state.by_id.get(node_id)
        serving = node is not None and node.role == "master" and node.entry.slots
        verdicts = "; ".join("%s by %s" % (verdict, ", ".join(sorted(observers)))
                             for verdict, observers in sorted(flagged[node_id].items()))
        yield Finding("node_failing", CRITICAL if serving and "fail" in flagged[node_id] else WARNING,
                      "%s is flagged %s" % (state.label(node_id), verdicts), nodes=(node_id,))


def _unjoined(state: ClusterState):
    for obs in state.reachable:
        if obs.unconfigured:
            yield Finding("node_not_joined", WARNING,
                          "%s knows no other node and serves no slot: it has not joined the cluster"
                          % state.label(obs.myself.id), nodes=(obs.myself.id,))


def _inconsistent(state: ClusterState):
    if state.majority_view is None:
        return
    majority = slot_signature(state.majority_view.entries)
    reference = state.slot_owners
    for obs, signature in state.views:
        if signature == majority:
            continue
        owners = owner_map(obs.entries)
        differing = sorted(slot for slot in set(owners) | set(reference) if owners.get(slot) != reference.get(slot))
        ranges = ranges_from_slots(differing)
        example = differing[0]
        described = "%d slot(s) %s (e.g. slot %d: it says %s, the majority says %s)" % (
            len(differing), format_ranges(ranges), example, _owner_name(state, owners.get(example)),
            _owner_name(state, reference.get(example)))
        if _still_learning(state, obs, owners, differing):
            yield Finding("inconsistent_config", WARNING,
                          "%s has yet to learn the owner of %s; it learns each master's slots from that master's "
                          "own messages, within seconds of meeting it" % (state.label(obs.myself.id), described),
                          nodes=(obs.myself.id,), slots=ranges)
        else:
            yield Finding("inconsistent_config", CRITICAL,
                          "%s disagrees with the majority view about %s" % (state.label(obs.myself.id), described),
                          nodes=(obs.myself.id,), slots=ranges)


def _still_learning(state: ClusterState, obs, owners: dict, differing) -> bool:
    """Whether a view differs from the majority only by owners it has not heard of yet: it names nobody where they
    differ, and each owner the majority names is another node that claims the slot in its own view (a claim every
    node hears from the claimer in time). An owner that dropped its own slot is never heard claiming it."""
    if any(slot in owners for slot in differing):
        return False
    claimed = {}
    for slot in differing:
        owner = state.slot_owners[slot]
        if owner == obs.myself.id:
            return False
        if owner not in claimed:
            node = state.by_id.get(owner)
            claimed[owner] = owner_map((node.entry,)) if node is not None and node.reachable else {}
        if slot not in claimed[owner]:
            return False
    return True


def _owner_name(state: ClusterState, owner) -> str:
    return state.label(owner) if owner else "nobody"


def _uncovered(state: ClusterState):
    if not state.views:
        return
    uncovered = state.ownership.uncovered
    if uncovered:
        example = uncovered[0][0]
        yield Finding("uncovered_slots", CRITICAL,
                      "%d slot(s) are served by no reachable master in its own view: %s (e.g. %s)"
                      % (count_slots(uncovered), format_ranges(uncovered), state.ownership.describe(example)),
                      slots=uncovered)


def _multiple_owners(state: ClusterState):
    # Two masters that each claim a slot in their own view: the config epoch collision case.
    contested = {}
    for slot in state.ownership.contested:
        contested.setdefault(state.ownership.claims[slot], []).append(slot)
    for owners, slots in sorted(contested.items()):
        ranges = ranges_from_slots(slots)
        yield Finding("multiple_owners", CRITICAL,
                      "slot(s) %s are claimed by %s" % (format_ranges(ranges), " and ".join(state.label(o) for o in owners)),
                      nodes=owners, slots=ranges)


def _foreign_keys(state: ClusterState):
    for node in state.nodes:
        if node.observation is None or not node.observation.foreign_keys:
            continue
        slots = [slot for slot, _count in node.observation.foreign_keys]
        ranges = ranges_from_slots(slots)
        keys = sum(count for _slot, count in node.observation.foreign_keys)
        owners = sorted({_owner_name(state, state.slot_owners.get(slot)) for slot in slots})
        if node.role == "replica":
            # Clients never read these keys; they matter once the replica is promoted and brings them back.
            yield Finding("replica_stray_keys", WARNING,
                          "replica %s holds %d key(s) in slot(s) %s that its master does not serve (served by %s); "
                          "run redisops.cluster.redis_cluster_fix to delete them before a failover brings them back"
                          % (node.describe(), keys, format_ranges(ranges), ", ".join(owners)),
                          nodes=(node.id,), slots=ranges)
            continue
        yield Finding("multiple_owners", CRITICAL,
                      "%s holds %d key(s) in slot(s) %s that it does not serve (served by %s)"
                      % (node.describe(), keys, format_ranges(ranges), ", ".join(owners)),
                      nodes=(node.id,), slots=ranges)


def _open_slots(state: ClusterState):
    # One finding per (source, target, which sides say so): the three cases fix handles differently.
    sides = {}
    for slot, opened in state.ownership.open_slots.items():
        for node_id, partner in opened.migrating.items():
            sides.setdefault((slot, node_id, partner), set()).add("migrating")
        for node_id, partner in opened.importing.items():
            sides.setdefault((slot, partner, node_id), set()).add("importing")
    grouped = {}
    for (slot, source, target), said in sides.items():
        grouped.setdefault((source, target, tuple(sorted(said))), []).append(slot)
    for (source, target, said), slots in sorted(grouped.items()):
        ranges = ranges_from_slots(slots)
        if len(said) == 2:
            how = "%s is migrating them and %s is importing them" % (state.label(source), state.label(target))
        elif said == ("migrating",):
            how = "%s is migrating them, but %s is not importing them" % (state.label(source), state.label(target))
        else:
            how = "%s is importing them, but %s is not migrating them" % (state.label(target), state.label(source))
        yield Finding("open_slot", WARNING,
                      "slot(s) %s are open from %s to %s: %s"
                      % (format_ranges(ranges), state.label(source), state.label(target), how),
                      nodes=(source, target), slots=ranges)


def _without_replica(state: ClusterState):
    for node in state.masters:
        if not node.entry.slots or node.entry.failed:
            continue
        healthy = [r for r in state.replicas_of(node.id) if not r.entry.failed]
        if not healthy:
            yield Finding("master_without_replica", WARNING,
                          "%s serves %d slot(s) and has no healthy replica: losing it loses those slots"
                          % (node.describe(), count_slots(node.entry.slots)), nodes=(node.id,))


def _anti_affinity(state: ClusterState):
    for replica in state.replicas:
        master = state.by_id.get(replica.entry.master_id)
        if master is None:
            continue
        mine, theirs = replica.label_map, master.label_map
        shared = [name for name in LABEL_KEYS if mine.get(name) and mine.get(name) == theirs.get(name)]
        if shared:
            yield Finding("anti_affinity", WARNING,
                          "replica %s shares %s with its master %s: one failure there loses both"
                          % (replica.describe(), ", ".join("%s %s" % (name, mine[name]) for name in shared),
                             master.describe()),
                          nodes=(replica.id, master.id))


def imbalance_pct(state: ClusterState) -> float:
    """Largest deviation of a master's slot count from an even share, in percent of that share."""
    masters = [node for node in state.masters if not node.entry.failed]
    if not masters:
        return 0.0
    even = SLOT_COUNT / len(masters)
    return max(abs(count_slots(node.entry.slots) - even) for node in masters) / even * 100


def _imbalance(state: ClusterState, threshold: float):
    deviation = imbalance_pct(state)
    if deviation > threshold:
        masters = [node for node in state.masters if not node.entry.failed]
        counts = ", ".join("%s %d" % (node.address, count_slots(node.entry.slots)) for node in masters)
        yield Finding("imbalance", INFO,
                      "slot shares deviate up to %.1f%% from an even share of %.1f (threshold %.1f%%): %s"
                      % (deviation, SLOT_COUNT / len(masters), threshold, counts),
                      nodes=tuple(node.id for node in masters))


def overall_state(state: ClusterState, findings) -> str:
    if state.not_configured:
        return "not_configured"
    failing = any(obs.cluster_info.get("cluster_state") != "ok" for obs in state.configured)
    if failing or any(f.kind == "uncovered_slots" for f in findings):
        return "failed"
    return "degraded" if findings else "ok"
