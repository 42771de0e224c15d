# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""plan_moves: a target that serves no slot gets its first slots without ASK, and clients a grace."""

from __future__ import annotations

from test_topology import OK_INFO

from ansible_collections.redisops.cluster.plugins.module_utils._planner import FIRST_SLOTS, MIGRATE_SLOTS, plan_moves
from ansible_collections.redisops.cluster.plugins.module_utils._shares import Move
from ansible_collections.redisops.cluster.plugins.module_utils._slots import slots_from_ranges
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, NodeAddress, observation_from_replies,
)

IDS = {port: ("%d" % port) * 8 for port in (7001, 7002, 7003, 7004)}
SLOTS = {7001: "0-5460", 7002: "5461-10922", 7003: "10923-16383", 7004: ""}


def cluster(empty_target: bool = True) -> ClusterState:
    """3 masters and a 4th that serves no slot (or slot 16383 when not empty_target), every node in agreement."""
    slots = dict(SLOTS)
    if not empty_target:
        slots.update({7003: "10923-16382", 7004: "16383"})
    observations = []
    for me in IDS:
        lines = ["%s 127.0.0.1:%d@%d %s - 0 0 %d connected %s" % (IDS[port], port, port + 10000,
                                                                  "myself,master" if port == me else "master",
                                                                  port - 7000, slots[port]) for port in IDS]
        observations.append(observation_from_replies(NodeAddress("127.0.0.1", me), "\n".join(lines), OK_INFO, ""))
    return ClusterState(tuple(observations))


def migrate_steps(plan) -> list:
    return [step for step in plan.steps if step.action == MIGRATE_SLOTS]


def test_slots_without_keys_and_the_lightest_others_go_first_then_the_grace():
    moves = [Move(IDS[7001], IDS[7004], tuple(range(0, 100))), Move(IDS[7002], IDS[7004], tuple(range(5461, 5561)))]
    counts = {IDS[7001]: {slot: 5 for slot in range(0, 100) if slot % 10},
              IDS[7002]: {slot: 3 for slot in range(5461, 5561)}}
    first, second = migrate_steps(plan_moves(cluster(), moves, counts, 2.0))
    direct, keyed, grace = first.args[5]
    # Slots 0, 10, ..., 90 hold no key: they go first, and FIRST_SLOTS others besides, as clients use no empty slot.
    assert slots_from_ranges(direct) == tuple(range(0, 100, 10)) and grace == 2.0
    # 7002's slots (3 keys each) are lighter than 7001's (5 keys each): the lightest are all its.
    assert keyed == () and second.args[5][0] == ()
    assert slots_from_ranges(second.args[5][1]) == tuple(range(5461, 5461 + FIRST_SLOTS))
    assert "meet it through MOVED first" in first.description and "2 s at most (client_grace)" in first.description


def test_a_target_that_serves_slots_moves_at_full_speed_at_once():
    moves = [Move(IDS[7001], IDS[7004], tuple(range(0, 100)))]
    (step,) = migrate_steps(plan_moves(cluster(empty_target=False), moves, {}, 2.0))
    assert step.args[5] == () and "MOVED" not in step.description


def test_every_slot_empty_goes_over_directly():
    moves = [Move(IDS[7001], IDS[7004], tuple(range(0, 1365)))]
    (step,) = migrate_steps(plan_moves(cluster(), moves, {}, 0.0))
    direct, keyed, grace = step.args[5]
    assert slots_from_ranges(direct) == tuple(range(0, 1365)) and keyed == () and grace == 0.0
    assert "client_grace 0" in step.description
