# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Rebalance and reshard decisions: fewest moves, exact targets, caps, proportional reshard, errors."""

from __future__ import annotations

import math
import random
import time
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils._shares import (
    Move, SharesError, apply_moves, deviation, over_threshold, rebalance, reshard, reshard_slots, slot_counts,
    targets,
)
from ansible_collections.redisops.cluster.plugins.module_utils._slots import SLOT_COUNT, ranges_from_slots


def node(index: int) -> str:
    return "%040x" % (index + 1)  # node ids are 40 hex digits


def contiguous(counts) -> dict:
    """Masters node(0), node(1), ... holding consecutive blocks of the given sizes (0 = empty)."""
    holdings, first = {}, 0
    for index, count in enumerate(counts):
        holdings[node(index)] = ((first, first + count - 1),) if count else ()
        first += count
    return holdings


def scattered(masters: int, seed: int, empty: int = 0, block: int = 1) -> dict:
    """Runs of 1 to block slots, each to a random one of the first masters - empty; the last `empty` hold nothing."""
    rng = random.Random(seed)
    owners = {node(index): [] for index in range(masters)}
    holders = max(1, masters - empty)
    first = 0
    while first < SLOT_COUNT:
        last = min(SLOT_COUNT, first + rng.randint(1, block))
        owners[node(rng.randrange(holders))].extend(range(first, last))
        first = last
    return {key: ranges_from_slots(slots) for key, slots in owners.items()}


@st.composite
def clusters(draw, min_masters: int = 2, max_masters: int = 50) -> dict:
    masters = draw(st.integers(min_value=min_masters, max_value=max_masters))
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=SLOT_COUNT),
                                    min_size=masters - 1, max_size=masters - 1)))
        bounds = [0] + cuts + [SLOT_COUNT]
        holdings = contiguous([bounds[i + 1] - bounds[i] for i in range(masters)])
    else:
        holdings = scattered(masters, draw(st.integers(0, 2 ** 32)), empty=draw(st.integers(0, masters - 1)),
                             block=draw(st.sampled_from([1, 16, 256, 4096])))
    order = draw(st.permutations(sorted(holdings)))
    return {key: holdings[key] for key in order}


@st.composite
def weightings(draw, holdings: dict) -> dict:
    """Weights for some masters (the rest weigh 1), zeros included, never all zero."""
    weights = {}
    for key in sorted(holdings):
        if draw(st.booleans()):
            weights[key] = draw(st.sampled_from([0, 0, 0.5, 1, 1.5, 2, 3, 0.1, 7.25]))
    if len(weights) == len(holdings) and not any(weights.values()):
        weights[min(weights)] = 1
    return weights


def lower_bound(holdings: dict, goal: dict) -> int:
    counts = slot_counts(holdings)
    return sum(max(0, counts[key] - goal[key]) for key in holdings)


def check_moves(holdings: dict, moves: tuple, goal: dict) -> None:
    """What every plan keeps: real slots from their source, each once, only from above target to below it."""
    counts = slot_counts(holdings)
    owner = {slot: key for key, ranges in holdings.items() for first, last in ranges for slot in range(first, last + 1)}
    moved = [slot for move in moves for slot in move.slots]
    assert len(moved) == len(set(moved))  # no slot moves twice
    given, taken = {}, {}
    for move in moves:
        assert move.slots and move.slots == tuple(sorted(move.slots)) and move.source != move.target
        assert all(owner[slot] == move.source for slot in move.slots)
        assert counts[move.source] > goal[move.source]  # only above-target masters give ...
        assert counts[move.target] < goal[move.target]  # ... and only below-target ones receive
        given[move.source] = given.get(move.source, 0) + len(move.slots)
        taken[move.target] = taken.get(move.target, 0) + len(move.slots)
    assert all(count <= counts[key] - goal[key] for key, count in given.items())
    assert all(count <= goal[key] - counts[key] for key, count in taken.items())
    assert not set(given) & set(taken)  # no loops
    assert len({(move.source, move.target) for move in moves}) == len(moves)


def total(moves) -> int:
    return sum(len(move.slots) for move in moves)


# --- properties ----------------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(st.data())
def test_rebalance_moves_the_fewest_slots_to_exact_targets(data):
    holdings = data.draw(clusters())
    weights = data.draw(weightings(holdings))
    use_empty = data.draw(st.booleans())
    weight = {key: Fraction(weights.get(key, 1 if use_empty or holdings[key] else 0)) for key in holdings}
    if not any(weight.values()):  # e.g. draining the only holder while leaving empty masters out
        with pytest.raises(SharesError, match="every master weighs 0"):
            rebalance(holdings, weights, use_empty_masters=use_empty)
        return
    goal = targets(holdings, weights, use_empty_masters=use_empty)
    assert sum(goal.values()) == SLOT_COUNT and set(goal) == set(holdings)
    for key in holdings:  # within one slot of the exact weighted share
        assert abs(goal[key] - SLOT_COUNT * weight[key] / sum(weight.values())) < 1
    moves = rebalance(holdings, weights, threshold=0, use_empty_masters=use_empty)
    check_moves(holdings, moves, goal)
    assert total(moves) == lower_bound(holdings, goal)
    assert slot_counts(apply_moves(holdings, moves)) == goal
    assert rebalance(apply_moves(holdings, moves), weights, threshold=0, use_empty_masters=use_empty) == ()


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_threshold_decides_whether_anything_moves(data):
    holdings = data.draw(clusters())
    weights = data.draw(weightings(holdings))
    threshold = data.draw(st.sampled_from([0, 0.5, 2, 10, 50, 100, 400]))
    goal = targets(holdings, weights)
    moves = rebalance(holdings, weights, threshold=threshold)
    over = over_threshold(holdings, goal, threshold)
    counts = slot_counts(holdings)
    assert over == tuple(sorted(key for key in holdings if deviation(counts[key], goal[key]) > threshold))
    if over:  # once any master is over, all go to their targets
        assert total(moves) == lower_bound(holdings, goal)
    else:
        assert moves == ()


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 50), st.sampled_from([1, 2, 5, 20]), st.randoms(use_true_random=False))
def test_masters_within_threshold_stay_put(masters, threshold, rng):
    goal = targets(contiguous([1] * masters), {})
    counts = [goal[node(index)] for index in range(masters)]
    for index in range(0, masters - 1, 2):  # shift slots between pairs, each side within threshold
        room = min(counts[index], counts[index + 1]) * threshold // 100
        shift = rng.randint(0, room)
        counts[index] += shift
        counts[index + 1] -= shift
    holdings = contiguous(counts)
    assert over_threshold(holdings, goal, threshold) == ()
    assert rebalance(holdings, threshold=threshold) == ()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_max_slots_caps_each_run_and_runs_converge(data):
    holdings = data.draw(clusters(max_masters=20))
    weights = data.draw(weightings(holdings))
    goal = targets(holdings, weights)
    left = lower_bound_start = lower_bound(holdings, goal)
    assume(left > 1)
    cap = data.draw(st.integers(min_value=max(1, left // 6), max_value=left - 1))  # a few runs: each plans in full
    runs = 0
    while left:
        moves = rebalance(holdings, weights, threshold=0, max_slots=cap)
        check_moves(holdings, moves, goal)
        assert total(moves) == min(cap, left)
        holdings = apply_moves(holdings, moves)
        assert lower_bound(holdings, goal) == left - total(moves)
        left -= total(moves)
        runs += 1
        assert targets(holdings, weights) == goal
    assert runs == -(-lower_bound_start // cap)
    assert slot_counts(holdings) == goal
    assert rebalance(holdings, weights, threshold=0, max_slots=cap) == ()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_capped_runs_take_from_the_worst_first(data):
    holdings = data.draw(clusters(max_masters=20))
    weights = data.draw(weightings(holdings))
    goal = targets(holdings, weights)
    counts = slot_counts(holdings)
    assume(lower_bound(holdings, goal) > 1)
    cap = data.draw(st.integers(min_value=1, max_value=lower_bound(holdings, goal) - 1))
    after = slot_counts(apply_moves(holdings, rebalance(holdings, weights, threshold=0, max_slots=cap)))

    def over(key, have):  # how far above target, relative to it; a drained master is worst
        return math.inf if not goal[key] and have else (have - goal[key]) / goal[key] if goal[key] else 0.0

    def under(key, have):
        return (goal[key] - have) / goal[key] if goal[key] else 0.0

    # Slot by slot, the worst master gave (or took) next: its last slot was given while it was the worst.
    for measure, sign in ((over, 1), (under, -1)):
        moved = [key for key in holdings if (counts[key] - after[key]) * sign > 0]
        for key in moved:
            before_last = measure(key, after[key] + sign)
            assert all(before_last >= measure(other, after[other]) - 1e-12 for other in holdings)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_plan_does_not_depend_on_input_order(data):
    holdings = data.draw(clusters(max_masters=30))
    weights = data.draw(weightings(holdings))
    keys = data.draw(st.permutations(sorted(holdings)))
    shuffled = {key: tuple(reversed(holdings[key])) for key in keys}
    weights_shuffled = {key: weights[key] for key in reversed(sorted(weights))}
    counts = {slot: slot % 3 for slot in range(0, SLOT_COUNT, 7)}
    assert targets(holdings, weights) == targets(shuffled, weights_shuffled)
    assert rebalance(holdings, weights, 0, 500, counts) == rebalance(shuffled, weights_shuffled, 0, 500, counts)
    counts = slot_counts(holdings)
    target = min(keys, key=lambda key: (counts[key], key))  # the others hold 100 slots or more
    assert reshard(holdings, target, 100) == reshard(shuffled, target, 100)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_reshard_moves_exactly_n_in_proportion(data):
    holdings = data.draw(clusters())
    keys = sorted(holdings)
    target = data.draw(st.sampled_from(keys))
    others = [key for key in keys if key != target]
    sources = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(others), min_size=1, unique=True)))
    givers = others if sources is None else sources
    counts = slot_counts(holdings)
    have = sum(counts[key] for key in givers)
    if not have:
        with pytest.raises(SharesError, match="hold no slots"):
            reshard(holdings, target, 1, sources)
        return
    count = data.draw(st.integers(min_value=1, max_value=have))
    moves = reshard(holdings, target, count, sources)
    assert total(moves) == count
    assert all(move.target == target and move.source in givers for move in moves)
    assert len({move.source for move in moves}) == len(moves)
    given = {move.source: len(move.slots) for move in moves}
    for key in givers:  # largest remainder: within one slot of the exact share, never more than held
        assert abs(given.get(key, 0) - Fraction(count * counts[key], have)) < 1
        assert given.get(key, 0) <= counts[key]
    after = slot_counts(apply_moves(holdings, moves))
    assert after[target] == counts[target] + count
    if have < SLOT_COUNT:
        with pytest.raises(SharesError, match="hold only %d" % have):
            reshard(holdings, target, have + 1, sources)


# --- examples ------------------------------------------------------------------------------------------------

def test_three_masters_and_an_empty_one_even_out():
    holdings = contiguous([5461, 5462, 5461, 0])
    moves = rebalance(holdings)
    assert targets(holdings, {}) == dict.fromkeys(holdings, 4096)
    assert total(moves) == 4096
    assert {move.target for move in moves} == {node(3)}
    # Each source gives the top of its range and keeps one range.
    assert [move.ranges for move in moves] == [((4096, 5460),), ((9557, 10922),), ((15019, 16383),)]
    assert slot_counts(apply_moves(holdings, moves)) == dict.fromkeys(holdings, 4096)


def test_weight_zero_drains_a_master():
    holdings = contiguous([5462, 5461, 5461])
    moves = rebalance(holdings, {node(2): 0})
    assert all(move.source == node(2) for move in moves)
    assert total(moves) == 5461
    assert slot_counts(apply_moves(holdings, moves)) == {node(0): 8192, node(1): 8192, node(2): 0}


def test_weights_two_one_one():
    holdings = contiguous([5462, 5461, 5461])
    goal = targets(holdings, {node(0): 2})
    assert goal == {node(0): 8192, node(1): 4096, node(2): 4096}
    moves = rebalance(holdings, {node(0): 2.0, node(1): 1, node(2): 1})
    assert total(moves) == 2730
    assert slot_counts(apply_moves(holdings, moves)) == goal


def test_rounding_ties_go_to_the_lower_id():
    holdings = {"c": (), "a": ((0, 16383),), "b": ()}
    assert targets(holdings, {}) == {"a": 5462, "b": 5461, "c": 5461}
    holdings = {"b": ((0, 16383),), "a": ()}
    assert targets(holdings, {"a": 1, "b": 1}) == {"a": 8192, "b": 8192}
    # 0.1 is not exact in binary: the split must still be exact and in proportion.
    assert targets({"a": ((0, 16383),), "b": ()}, {"a": 0.1, "b": 0.3}) == {"a": 4096, "b": 12288}


def test_fewest_keys_picks_the_emptiest_slots_wherever_they_are():
    holdings = contiguous([16384, 0])
    counts = {slot: 5 for slot in range(SLOT_COUNT)}
    counts.update({slot: 0 for slot in range(100, 8292)})  # 8192 empty slots in the middle
    counts[100] = 1
    counts[9000] = 0  # one lone empty slot beyond them
    moves = rebalance(holdings, key_counts=counts, slot_choice="fewest_keys")
    assert moves[0].ranges == ((101, 8291), (9000, 9000))
    # Unknown slots count 0; among equals a whole short run goes before cutting into a long one.
    holdings = {"a": ((0, 99), (200, 16383)), "b": ((100, 199),)}
    moves = rebalance(holdings, {}, key_counts={}, slot_choice="fewest_keys")
    assert moves[0].ranges[0] == (0, 99) and total(moves) == 8092
    assert apply_moves(holdings, moves) == {"a": ((200, 8391),), "b": ((0, 199), (8392, 16383))}


def test_contiguous_takes_one_run_and_leaves_hot_slots():
    holdings = contiguous([16384, 0])
    # One key costs less than a second range: the run 100-8291 with its one key, not 101-8291 and 9000.
    counts = {slot: 5 for slot in range(SLOT_COUNT)}
    counts.update({slot: 0 for slot in range(100, 8292)})
    counts[100] = 1
    counts[9000] = 0
    assert rebalance(holdings, key_counts=counts)[0].ranges == ((100, 8291),)
    # Without key counts (an empty cluster), the top end: one range left on each side, as redis-cli leaves.
    assert rebalance(holdings)[0].ranges == ((8192, 16383),)
    # Hot slots stay, and the run cuts the source's range once: 3808-11999 would cut it before 12000 too.
    counts = {slot: 1 for slot in range(SLOT_COUNT)}
    counts.update({12000: 10000, 16000: 10000})
    assert rebalance(holdings, key_counts=counts)[0].ranges == ((0, 8191),)
    # When every run of the size needed meets a hot slot, the run goes around it (ties: the highest run).
    holdings = {"a": ((0, 999),), "b": ()}
    counts = {slot: 1 for slot in range(1000)}
    counts[500] = 40  # more than 32 keys and twice the median
    moves = reshard(holdings, "b", 600, key_counts=counts)
    assert moves[0].ranges == ((399, 499), (501, 999))
    # Hot slots move only when the others do not suffice, the fewest keys first.
    holdings = {"a": ((0, 9),), "b": ()}
    counts = {0: 500, 3: 100, 5: 300, 7: 200}
    assert reshard(holdings, "b", 8, key_counts=counts)[0].slots == (1, 2, 3, 4, 6, 7, 8, 9)


def window_cost(window, key_counts, owned) -> int:
    """Keys in a window of a source's light slots, plus 32 for every range it adds: each break (the next slot
    not the next number), and each end that cuts into a range of the source (owned: its slots)."""
    breaks = sum(1 for before, after in zip(window, window[1:]) if after != before + 1)
    cuts = (window[0] - 1 in owned) + (window[-1] + 1 in owned)
    return sum(key_counts.get(slot, 0) for slot in window) + 32 * (breaks + cuts)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_contiguous_choice_is_the_cheapest_window_of_light_slots(data):
    owned = sorted(data.draw(st.sets(st.integers(0, 399), min_size=1, max_size=200)))
    counts = {slot: data.draw(st.one_of(st.integers(0, 20), st.integers(0, 20), st.integers(30, 5000)))
              for slot in owned}
    count = data.draw(st.integers(1, len(owned)))
    moves = reshard({"a": ranges_from_slots(owned), "b": ()}, "b", count, key_counts=counts)
    taken = moves[0].slots
    assert len(moves) == 1 and len(taken) == count and set(taken) <= set(owned)
    median = sorted(counts[slot] for slot in owned)[len(owned) // 2]
    light = [slot for slot in owned if counts[slot] <= max(32, 2 * median)]
    if count >= len(light):
        assert set(light) <= set(taken)
        left_heavy = [counts[slot] for slot in owned if slot not in taken]
        assert all(counts[slot] <= least for slot in taken if slot not in light for least in left_heavy)
        return
    windows = [tuple(light[first:first + count]) for first in range(len(light) - count + 1)]
    assert taken in windows  # no hot slot, and consecutive among the light ones
    cheapest = min(window_cost(window, counts, set(owned)) for window in windows)
    assert window_cost(taken, counts, set(owned)) == cheapest
    # Ties go to the highest window.
    assert taken == max(window for window in windows if window_cost(window, counts, set(owned)) == cheapest)


@settings(max_examples=60, deadline=None)
@given(clusters(), st.data())
def test_slot_choice_changes_which_slots_not_how_many(holdings, data):
    with_keys = data.draw(st.sets(st.integers(0, SLOT_COUNT - 1), max_size=300))
    counts = {slot: data.draw(st.integers(0, 3)) for slot in with_keys}
    by_choice = [rebalance(holdings, threshold=0, key_counts=counts, slot_choice=choice)
                 for choice in ("contiguous", "fewest_keys")]
    goal = targets(holdings)
    for moves in by_choice:
        check_moves(holdings, moves, goal)
        assert slot_counts(apply_moves(holdings, moves)) == goal
    assert [(move.source, move.target, len(move.slots)) for move in by_choice[0]] \
        == [(move.source, move.target, len(move.slots)) for move in by_choice[1]]


def test_use_empty_masters_false_leaves_empty_masters_out_unless_weighted():
    holdings = contiguous([8192, 8192, 0])
    assert rebalance(holdings, use_empty_masters=False) == ()
    assert targets(holdings, {}, use_empty_masters=False)[node(2)] == 0
    moves = rebalance(holdings, {node(2): 1}, use_empty_masters=False)
    assert total(moves) == 5461
    assert slot_counts(apply_moves(holdings, moves))[node(2)] == 5461
    assert total(rebalance(holdings)) == 5461  # the default uses empty masters


def test_threshold_uses_the_target_as_base_and_target_zero_is_always_over():
    holdings = contiguous([8192 + 163, 8192 - 163])  # 163 / 8192 = 1.99 %
    assert rebalance(holdings) == ()
    assert total(rebalance(holdings, threshold=1)) == 163
    assert deviation(8192 + 164, 8192) > 2.0
    assert total(rebalance(contiguous([8192 + 164, 8192 - 164]))) == 164
    # A drained master holding a single slot is over any threshold.
    holdings = contiguous([16383, 1])
    assert [move.slots for move in rebalance(holdings, {node(1): 0}, threshold=400)] == [(16383,)]
    assert deviation(0, 0) == 0 and deviation(5, 0) == math.inf


def test_max_slots_drains_first_then_the_most_over():
    holdings = contiguous([6000, 6000, 4384, 0])
    moves = rebalance(holdings, {node(2): 0}, max_slots=5000)
    given = {move.source: len(move.slots) for move in moves}
    # node(2) drains first; then node(1) (539 over 5461) and node(0) (538 over 5462) level down together.
    assert given == {node(2): 4384, node(0): 307, node(1): 309}
    # Receivers are filled furthest-below first.
    holdings = contiguous([10000, 5000, 1384])
    moves = rebalance(holdings, max_slots=2000)
    assert {move.target: len(move.slots) for move in moves} == {node(2): 2000}


def test_reshard_examples():
    holdings = contiguous([8000, 4000, 4384, 0])
    moves = reshard(holdings, node(3), 1000)
    assert {move.source: len(move.slots) for move in moves} == {node(0): 488, node(1): 244, node(2): 268}
    assert [move.ranges[-1][1] for move in moves] == [7999, 11999, 16383]  # from the top of each range
    moves = reshard(holdings, node(3), 100, sources=[node(1)])
    assert moves == (Move(node(1), node(3), tuple(range(11900, 12000))),)
    assert total(reshard(holdings, node(0), 8384)) == 8384  # everything the others hold
    assert total(reshard(holdings, node(3), SLOT_COUNT)) == SLOT_COUNT
    # An end of the source's range costs one cut and no keys, so the slot with keys stays ...
    moves = reshard(holdings, node(3), 10, node(1), key_counts={11990: 7})
    assert moves[0].slots == tuple(range(8000, 8010))
    # ... but with keys near both ends, seven keys cost less than the second cut of a run in the middle.
    moves = reshard(holdings, node(3), 10, node(1), key_counts={11990: 7, 8005: 7})
    assert moves[0].slots == tuple(range(11990, 12000))
    # fewest_keys leaves the slot with keys: the keyless run above it whole, then the top of the one below.
    moves = reshard(holdings, node(3), 10, node(1), key_counts={11990: 7}, slot_choice="fewest_keys")
    assert moves[0].slots == (11989,) + tuple(range(11991, 12000))


def test_reshard_named_slots():
    holdings = contiguous([8000, 8384, 0])
    moves = reshard_slots(holdings, node(2), [8001, 5, 8000, 6, 5, 7999])
    assert moves == (Move(node(0), node(2), (5, 6, 7999)), Move(node(1), node(2), (8000, 8001)))
    assert reshard_slots(holdings, node(0), range(10)) == ()  # already there
    assert reshard_slots(apply_moves(holdings, moves), node(2), [5, 6, 7999, 8000, 8001]) == ()


def test_apply_moves_refuses_slots_the_source_lacks():
    holdings = contiguous([10, 16374])
    with pytest.raises(SharesError, match="does not hold slot"):
        apply_moves(holdings, [Move(node(0), node(1), (10, 11))])


def test_1000_masters_plan_quickly():
    holdings = scattered(1000, 7, empty=200)
    weights = {node(index): (0 if index % 17 == 0 else 1 + index % 3) for index in range(1000)}
    key_counts = {slot: slot % 11 for slot in range(SLOT_COUNT)}
    started = time.perf_counter()
    moves = rebalance(holdings, weights, threshold=0, key_counts=key_counts)
    capped = rebalance(holdings, weights, threshold=0, max_slots=4000, key_counts=key_counts)
    resharded = reshard(holdings, node(999), 8000, key_counts=key_counts)
    elapsed = time.perf_counter() - started
    assert total(moves) == lower_bound(holdings, targets(holdings, weights))
    assert total(capped) == 4000 and total(resharded) == 8000
    assert elapsed < 0.5 * 3  # three plans


# --- errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"weights": {"zz": 1}}, "weights names zz, not a master"),
    ({"weights": {"a": -1}}, "weight of a is -1"),
    ({"weights": {"a": float("nan")}}, "weight of a is nan"),
    ({"weights": {"a": "2"}}, "weight of a must be a number"),
    ({"weights": {"a": 0, "b": 0}}, "every master weighs 0"),
    ({"threshold": -1}, "threshold is a percentage"),
    ({"max_slots": -5}, "max_slots must be"),
    ({"max_slots": 1.5}, "max_slots must be"),
    ({"slot_choice": "random"}, "slot_choice must be one of contiguous, fewest_keys"),
])
def test_rebalance_errors(kwargs, message):
    with pytest.raises(SharesError, match=message):
        rebalance({"a": ((0, 9999),), "b": ((10000, 16383),)}, **kwargs)


def test_holdings_errors():
    with pytest.raises(SharesError, match="slot 5 is held by both a and b"):
        rebalance({"a": ((0, 9),), "b": ((5, 16383),)})
    with pytest.raises(SharesError, match="slot\\(s\\) 10-19 are held by no master"):
        rebalance({"a": ((0, 9),), "b": ((20, 16383),)})
    with pytest.raises(SharesError, match="outside 0-16383"):
        targets({"a": ((0, 16384),)})
    with pytest.raises(SharesError, match="no masters"):
        targets({})
    assert isinstance(SharesError("x"), ValueError)


@pytest.mark.parametrize("args, kwargs, message", [
    (("zz", 10), {}, "target \\(to\\) zz is not a master"),
    (("a", 0), {}, "from 1 to 16384, got 0"),
    (("a", 16385), {}, "from 1 to 16384, got 16385"),
    (("a", True), {}, "slots \\(the number of slots to move\\) must be a whole number"),
    (("c", 10001), {}, "10001 slots asked for c, but its sources \\(from: a, b\\) hold only 10000"),
    (("c", 10), {"sources": ["a", "zz"]}, "from names zz"),
    (("c", 10), {"sources": ["a", "c"]}, "c is both the target \\(to\\) and a source \\(from\\)"),
    (("c", 10), {"sources": []}, "from is empty"),
])
def test_reshard_errors(args, kwargs, message):
    with pytest.raises(SharesError, match=message):
        reshard({"a": ((0, 4999),), "b": ((5000, 9999),), "c": ((10000, 16383),)}, *args, **kwargs)


def test_reshard_slots_errors():
    holdings = {"a": ((0, 99),), "b": ((200, 16383),)}
    with pytest.raises(SharesError, match="slot\\(s\\) 100-102 are held by no master"):
        reshard_slots(holdings, "a", [100, 101, 102, 5])
    with pytest.raises(SharesError, match="slot 16384 is not a slot number"):
        reshard_slots(holdings, "a", [16384])
    with pytest.raises(SharesError, match="target \\(to\\) zz is not a master"):
        reshard_slots(holdings, "zz", [5])
