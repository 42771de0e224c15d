# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which slots move where to rebalance or reshard a cluster. Private to redisops.cluster.

Pure code: no I/O and no Ansible imports; the executor and the slot mover carry the moves out.
Holdings map every master id (empty masters too, with ()) to its (first, last) slot ranges, as
ClusterEntry.slots holds them. Same input in any order, same result.

Rebalance
- Weights: a master's target is its share of the 16384 slots, weight / total weight, rounded by the
  largest-remainder method (ties to the lower node id), so targets sum to exactly 16384 and each is
  within one slot of its exact share. Weight 0 drains a master. `weights` holds only the weights the
  user gave; every other master weighs 1.
- use_empty_masters: when false, a master holding no slots and given no weight weighs 0 and stays
  empty. A weight given for it wins. (redis-cli --cluster rebalance, without
  --cluster-use-empty-masters, leaves every empty master out, even one given a --cluster-weight.)
- threshold (%): nothing moves while every master is within it. A master's deviation is
  |have - target| / target * 100, and a master with target 0 that still holds slots is always over.
  (redis-cli divides by what the master has, not by its target, and ignores an empty master whose
  target is one slot.) Once any master is over, every master goes all the way to its target.
- Moves are the fewest possible: only masters above target give, only masters below receive, each
  exactly the difference, so the slots moved are sum(max(0, have - target)) and no slot moves twice.
- max_slots caps one run. The slots then come, one at a time, from the master furthest above its
  target relative to that target (masters being drained first) and go to the master furthest below
  its target relatively: each run serves the worst first, and repeated runs end at the targets
  (or stop earlier, once every master is within threshold).
- Which slots (slot_choice; key_counts: slot -> keys, unknown slots count 0):
  contiguous (the default): a source gives one window of its slots, taken in slot order, that costs
  the least: its keys, plus ROUND_TRIP_KEYS for every range it adds to a slot map (a break inside the
  window, where a slot in between stays or is not the source's, or a cut into one of the source's
  ranges at either end); ties go to the highest window. Slots far heavier than the source's typical
  slot (more than twice its median and more than ROUND_TRIP_KEYS keys) stay out of the window and
  move only when the rest do not suffice, the fewest keys first. Slot maps keep few ranges, as
  redis-cli's do, and hot slots stay where they are.
  fewest_keys: the slots with the fewest keys, wherever they are; among equals, whole short runs first,
  then the top end of the next run. It moves the fewest keys, and scatters slot maps into many ranges
  (every client's CLUSTER SLOTS grows with them).

Reshard moves exactly N slots to one target, from given sources or every other master, each source
giving in proportion to what it holds (largest remainder, ties to the lower node id); it refuses what
it cannot do exactly, where redis-cli moves fewer. reshard_slots moves named slots to one target.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from fractions import Fraction

from ._slots import SLOT_COUNT, format_ranges, ranges_from_slots

DEFAULT_THRESHOLD = 2.0
DEFAULT_WEIGHT = 1
SLOT_CHOICES = ("contiguous", "fewest_keys")
# A MIGRATE round trip costs about as much as moving this many keys in one: slots that hold fewer cost
# about the same to move, and each range a move adds to a slot map is charged as this many keys.
ROUND_TRIP_KEYS = 32


class SharesError(ValueError):
    """Input no plan can serve (the caller's error, never a bug); the message names what to change."""


@dataclasses.dataclass(frozen=True)
class Move:
    """Slots that go from one master to another."""

    source: str  # node id
    target: str  # node id
    slots: tuple  # sorted slot numbers

    @property
    def ranges(self) -> tuple:
        return ranges_from_slots(self.slots)


# --- rebalance -------------------------------------------------------------------------------------------

def targets(holdings: dict, weights=None, use_empty_masters: bool = True) -> dict:
    """Master id -> the slots it should hold; the targets sum to 16384 (see the module docstring)."""
    held = _held(holdings, complete=False)
    return _largest_remainder(SLOT_COUNT, _weights(held, weights or {}, use_empty_masters))


def deviation(have: int, target: int) -> float:
    """How far have is from target, in % of target; inf when target is 0 and have is not."""
    if target:
        return abs(have - target) * 100.0 / target
    return math.inf if have else 0.0


def over_threshold(holdings: dict, goal: dict, threshold: float = DEFAULT_THRESHOLD) -> tuple:
    """The masters (sorted ids) whose deviation from goal (targets()) is more than threshold %."""
    _check_threshold(threshold)
    held = _held(holdings, complete=False)
    return tuple(node for node in sorted(held) if deviation(len(held[node]), goal.get(node, 0)) > threshold)


def rebalance(holdings: dict, weights=None, threshold: float = DEFAULT_THRESHOLD, max_slots: int = 0,
              key_counts=None, use_empty_masters: bool = True, slot_choice: str = "contiguous") -> tuple:
    """The fewest moves that bring every master to its target; () when every master is within threshold.

    max_slots > 0 moves at most that many slots in this run (0: no cap).
    """
    _check_threshold(threshold)
    _check_slot_choice(slot_choice)
    if isinstance(max_slots, bool) or not isinstance(max_slots, int) or max_slots < 0:
        raise SharesError("max_slots must be a whole number, 0 (no cap) or more, got %r" % (max_slots,))
    held = _held(holdings, complete=True)
    goal = _largest_remainder(SLOT_COUNT, _weights(held, weights or {}, use_empty_masters))
    if not any(deviation(len(held[node]), goal[node]) > threshold for node in held):
        return ()
    give = {node: len(held[node]) - goal[node] for node in held if len(held[node]) > goal[node]}
    take = {node: goal[node] - len(held[node]) for node in held if len(held[node]) < goal[node]}
    total = sum(give.values())
    if max_slots and max_slots < total:
        give = _worst_first(give, goal, max_slots)
        take = _worst_first(take, goal, max_slots)
    return _moves(held, give, take, key_counts or {}, slot_choice)


def _weights(held: dict, weights: dict, use_empty_masters: bool) -> dict:
    """Master id -> exact weight (Fraction): those given, 1 for the rest (0 for empty ones: use_empty_masters)."""
    unknown = sorted(str(node) for node in weights if node not in held)
    if unknown:
        raise SharesError("weights names %s, not a master of the cluster: give weights to masters only"
                          % ", ".join(unknown))
    exact = {}
    for node in held:
        if node in weights:
            exact[node] = _weight(node, weights[node])
        elif use_empty_masters or held[node]:
            exact[node] = Fraction(DEFAULT_WEIGHT)
        else:
            exact[node] = Fraction(0)
    if not any(exact.values()):
        hint = "" if use_empty_masters else (" (with use_empty_masters false, a master holding no slots"
                                             " counts only if given a weight)")
        raise SharesError("every master weighs 0, so no master may hold slots: give at least one master"
                          " a weight above 0%s" % hint)
    return exact


def _weight(node: str, weight) -> Fraction:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise SharesError("the weight of %s must be a number, got %r" % (node, weight))
    if not math.isfinite(weight) or weight < 0:
        raise SharesError("the weight of %s is %r: weights must be 0 (drain) or more, and finite" % (node, weight))
    return Fraction(weight)  # exact: the rounding must not depend on float error


def _check_slot_choice(slot_choice) -> None:
    if slot_choice not in SLOT_CHOICES:
        raise SharesError("slot_choice must be one of %s, got %r" % (", ".join(SLOT_CHOICES), slot_choice))


def _check_threshold(threshold) -> None:
    valid = not isinstance(threshold, bool) and isinstance(threshold, (int, float))
    if not (valid and math.isfinite(threshold) and threshold >= 0):
        raise SharesError("threshold is a percentage, 0 or more, got %r" % (threshold,))


def _largest_remainder(total: int, shares: dict) -> dict:
    """Split total in proportion to shares (not all 0): floors, then one more each for the largest remainders."""
    whole = sum(shares.values())
    quotas = {node: total * Fraction(share) / whole for node, share in shares.items()}
    split = {node: math.floor(quota) for node, quota in quotas.items()}
    left = total - sum(split.values())
    for node in sorted(quotas, key=lambda node: (split[node] - quotas[node], node))[:left]:
        split[node] += 1
    return split


def _worst_first(amounts: dict, goal: dict, budget: int) -> dict:
    """Up to budget of amounts, one slot at a time, each from the master whose amount is largest relative to its target.

    A master with target 0 (being drained) comes before any other: it cannot stay within any threshold.
    """
    heap = [_urgency(node, amount, goal[node]) for node, amount in amounts.items()]
    heapq.heapify(heap)
    left = dict(amounts)
    chosen = dict.fromkeys(amounts, 0)
    for _step in range(budget):
        node = heapq.heappop(heap)[-1]
        chosen[node] += 1
        left[node] -= 1
        if left[node]:
            heapq.heappush(heap, _urgency(node, left[node], goal[node]))
    return {node: amount for node, amount in chosen.items() if amount}


def _urgency(node: str, amount: int, target: int) -> tuple:
    # Heap order: smallest first. Equal ratios give equal floats (division rounds correctly), so ties go to the id.
    if target:
        return (1, -amount / target, node)
    return (0, -amount, node)


def _moves(held: dict, give: dict, take: dict, key_counts, slot_choice: str) -> tuple:
    """Moves for the amounts each source gives and each receiver takes (equal sums).

    Largest source with largest receiver, as redis-cli pairs them: at most sources + receivers - 1 moves.
    """
    sources = sorted(give, key=lambda node: (-give[node], node))
    receivers = sorted(take, key=lambda node: (-take[node], node))
    wanted = dict(take)
    moves, index = [], 0
    for source in sources:
        slots = _pick(held[source], give[source], key_counts, slot_choice)
        start = 0
        while start < len(slots):
            receiver = receivers[index]
            count = min(wanted[receiver], len(slots) - start)
            moves.append(Move(source, receiver, slots[start:start + count]))
            wanted[receiver] -= count
            start += count
            if not wanted[receiver]:
                index += 1
    return tuple(sorted(moves, key=lambda move: (move.source, move.target)))


def _pick(slots: tuple, count: int, key_counts, slot_choice: str) -> tuple:
    """count of a source's sorted slots, chosen as slot_choice says (see the module docstring)."""
    if count >= len(slots):
        return tuple(slots)
    if slot_choice == "fewest_keys":
        return _fewest_keys(slots, count, key_counts)
    return _window(slots, count, key_counts)


def _window(slots: tuple, count: int, key_counts) -> tuple:
    """count of a source's sorted slots: the cheapest window of consecutive light slots, heavy ones only if needed."""
    keys = [key_counts.get(slot, 0) for slot in slots]
    heavy_above = max(ROUND_TRIP_KEYS, 2 * sorted(keys)[len(keys) // 2])
    light = [slot for slot, held in zip(slots, keys) if held <= heavy_above]
    if len(light) <= count:
        # Every light slot holds fewer keys than every heavy one: the fewest keys first takes them all, then
        # the lightest of the heavy ones.
        return _fewest_keys(slots, count, key_counts)
    # cost[i]: keys of light[:i] plus ROUND_TRIP_KEYS per break between two of them.
    cost = [0]
    for index, slot in enumerate(light):
        broken = index and light[index - 1] != slot - 1
        cost.append(cost[-1] + key_counts.get(slot, 0) + (ROUND_TRIP_KEYS if broken else 0))
    owned = set(slots)

    def window_cost(first: int) -> int:
        last = first + count - 1
        # The break before the window's first slot is not its own; a cut into one of the source's ranges is.
        inside = cost[last + 1] - cost[first + 1] + key_counts.get(light[first], 0)
        cuts = (light[first] - 1 in owned) + (light[last] + 1 in owned)
        return inside + ROUND_TRIP_KEYS * cuts

    start = min(range(len(light) - count + 1), key=lambda first: (window_cost(first), -first))
    return tuple(light[start:start + count])


def _fewest_keys(slots: tuple, count: int, key_counts) -> tuple:
    """count of a source's sorted slots: the fewest keys first, then whole short runs, then the top of the next run.

    A run is a stretch of consecutive slots with equal key counts. Every slot left behind has at least as
    many keys as every slot taken. Whole runs leave no stub behind, and without keys a run is one of the
    source's ranges, so taking its top end leaves one shorter range.
    """
    runs = []  # [keys, length, first, last]
    for slot in slots:
        keys = key_counts.get(slot, 0)
        if runs and runs[-1][3] == slot - 1 and runs[-1][0] == keys:
            runs[-1][1] += 1
            runs[-1][3] = slot
        else:
            runs.append([keys, 1, slot, slot])
    runs.sort()
    chosen, need = [], count
    for _keys, length, first, last in runs:
        taken = min(length, need)
        chosen.extend(range(last - taken + 1, last + 1))
        need -= taken
        if not need:
            break
    return tuple(sorted(chosen))


# --- reshard ---------------------------------------------------------------------------------------------

def reshard(holdings: dict, target: str, count: int, sources=None, key_counts=None,
            slot_choice: str = "contiguous") -> tuple:
    """Moves of exactly count slots to target, from sources (default: every other master) in proportion to holdings."""
    _check_slot_choice(slot_choice)
    held = _held(holdings, complete=False)
    _check_target(held, target)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= SLOT_COUNT:
        raise SharesError("slots (the number of slots to move) must be a whole number from 1 to %d, got %r"
                          % (SLOT_COUNT, count))
    givers = _sources(held, target, sources)
    have = sum(len(held[node]) for node in givers)
    if not have:
        raise SharesError("the sources (from) of %s (%s) hold no slots: name masters that hold slots"
                          % (target, ", ".join(givers) or "no other master"))
    if have < count:
        raise SharesError("%d slots asked for %s, but its sources (from: %s) hold only %d: ask for %d or fewer,"
                          " or add sources"
                          % (count, target, ", ".join(givers), have, have))
    split = _largest_remainder(count, {node: len(held[node]) for node in givers})
    # Each share is at most what its source holds: count <= have makes every quota <= its holding, an integer.
    return _moves(held, {node: n for node, n in split.items() if n}, {target: count}, key_counts or {}, slot_choice)


def reshard_slots(holdings: dict, target: str, slots) -> tuple:
    """Moves that bring the given slot numbers to target, one per current owner; slots target holds are skipped."""
    held = _held(holdings, complete=False)
    _check_target(held, target)
    wanted = set()
    for slot in slots:
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < SLOT_COUNT:
            raise SharesError("slot %r is not a slot number from 0 to %d" % (slot, SLOT_COUNT - 1))
        wanted.add(slot)
    owner = {slot: node for node, mine in held.items() for slot in mine}
    orphans = sorted(slot for slot in wanted if slot not in owner)
    if orphans:
        raise SharesError("slot(s) %s are held by no master, so there is nothing to move: assign them first"
                          " (fix the cluster)"
                          % format_ranges(ranges_from_slots(orphans)))
    grouped = {}
    for slot in sorted(wanted):
        if owner[slot] != target:
            grouped.setdefault(owner[slot], []).append(slot)
    return tuple(Move(source, target, tuple(grouped[source])) for source in sorted(grouped))


def _check_target(held: dict, target: str) -> None:
    if target not in held:
        raise SharesError("the target (to) %s is not a master of the cluster: make it a master (add it as one) first"
                          % (target,))


def _sources(held: dict, target: str, sources) -> tuple:
    if sources is None:
        return tuple(sorted(node for node in held if node != target and held[node]))
    if isinstance(sources, str):
        sources = (sources,)  # one id, not its characters
    chosen = sorted(set(sources))
    unknown = [str(node) for node in chosen if node not in held]
    if unknown:
        raise SharesError("from names %s, not a master of the cluster: take slots from masters only"
                          % ", ".join(unknown))
    if target in chosen:
        raise SharesError("%s is both the target (to) and a source (from): leave it out of from" % target)
    if not chosen:
        raise SharesError("from is empty: name the masters to take slots from, or give [all] to use"
                          " every other master")
    return tuple(chosen)


# --- holdings --------------------------------------------------------------------------------------------

def apply_moves(holdings: dict, moves) -> dict:
    """The holdings after moves (master id -> ranges); a move of a slot its source does not hold is an error."""
    held = {node: set(slots) for node, slots in _held(holdings, complete=False).items()}
    for move in moves:
        for node in (move.source, move.target):
            if node not in held:
                raise SharesError("a move names %s, not a master of the cluster" % node)
        missing = [slot for slot in move.slots if slot not in held[move.source]]
        if missing:
            raise SharesError("%s does not hold slot(s) %s that a move takes from it"
                              % (move.source, format_ranges(ranges_from_slots(missing))))
        held[move.source].difference_update(move.slots)
        held[move.target].update(move.slots)
    return {node: ranges_from_slots(slots) for node, slots in held.items()}


def slot_counts(holdings: dict) -> dict:
    """Master id -> how many slots it holds."""
    return {node: len(slots) for node, slots in _held(holdings, complete=False).items()}


def _held(holdings: dict, complete: bool) -> dict:
    """Master id -> its sorted slot numbers, checked: every slot held once, and by someone when complete."""
    if not holdings:
        raise SharesError("the cluster has no masters")
    held, spans = {}, []
    for node, ranges in holdings.items():
        if not isinstance(node, str) or not node:
            raise SharesError("master ids must be non-empty strings, got %r" % (node,))
        mine = []
        for first, last in ranges:
            if not 0 <= first <= last < SLOT_COUNT:
                raise SharesError("%s holds slot range %r, outside 0-%d" % (node, (first, last), SLOT_COUNT - 1))
            spans.append((first, last, node))
            mine.extend(range(first, last + 1))
        held[node] = tuple(sorted(mine))
    # Sorted spans: an overlap or a gap shows between neighbours (ranges, not 16384 slots, keep it quick).
    spans.sort()
    end, owner, unheld = -1, None, []
    for first, last, node in spans:
        if first <= end:
            raise SharesError("slot %d is held by both %s and %s: fix the cluster before moving slots"
                              % (first, owner, node) if owner != node else
                              "%s lists slot %d twice" % (node, first))
        if first > end + 1:
            unheld.append((end + 1, first - 1))
        end, owner = last, node
    if end < SLOT_COUNT - 1:
        unheld.append((end + 1, SLOT_COUNT - 1))
    if complete and unheld:
        raise SharesError("slot(s) %s are held by no master: fix the cluster (cover every slot) before rebalancing"
                          % format_ranges(tuple(unheld)))
    return held
