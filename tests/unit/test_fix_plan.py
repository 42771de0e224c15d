# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""plan_fix on captured cluster views: which repair, in which order."""

from __future__ import annotations

import pytest
from test_topology import OK_INFO, cluster_from, observe, read

from ansible_collections.redisops.cluster.plugins.module_utils._planner import (
    ADD_SLOTS, BUMP_EPOCH, CLAIM_SLOTS, FAILOVER, FORGET, MOVE_KEYS, SETSLOT, FixOptions, PlanError, handed_over,
    plan_fix, plan_open_slots,
)
from ansible_collections.redisops.cluster.plugins.module_utils._slots import count_slots
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, NodeAddress, NodeObservation, observation_from_replies, parse_cluster_nodes,
)


def actions(plan) -> list:
    return [(step.action, step.node_id[:8]) + tuple(step.args[:2]) for step in plan.steps]


def open_state():
    """The captured cluster with slot 100 open both ways, 101 only importing and 102 only migrating."""
    source, target = observe("migrating_source.txt"), observe("importing_target.txt")
    opened = {source.myself.id: source, target.myself.id: target}
    healthy = cluster_from(read("healthy_hostnames.txt"))
    return ClusterState((source, target) + tuple(obs for obs in healthy.observations if obs.myself.id not in opened))


def test_healthy_cluster_needs_nothing():
    assert plan_fix(cluster_from(read("healthy_hostnames.txt")), {}).empty


def test_both_sides_open_finishes_the_move_in_order():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    plan = plan_fix(state, {source: {100: 7}})
    slot100 = [step for step in plan.steps if step.args[:1] == (100,)]
    assert [(s.action, s.node_id) for s in slot100[:2]] == [(MOVE_KEYS, source), (SETSLOT, target)]
    hand_over = [s.node_id for s in slot100 if s.action == SETSLOT and s.args[1] == "NODE"]
    # SETSLOT NODE: the target first, the source second, the other masters last.
    assert hand_over[:2] == [target, source] and len(hand_over) == 3
    assert all(s.args[2] == target for s in slot100 if s.action == SETSLOT)


def test_only_migrating_without_keys_on_the_target_is_closed():
    state = open_state()
    source = state.observations[0].myself.id
    slot102 = [step for step in plan_fix(state, {}).steps if step.args[:1] == (102,)]
    assert [(s.action, s.node_id, s.args[1]) for s in slot102] == [(SETSLOT, source, "STABLE")]


def test_only_migrating_with_keys_already_moved_finishes_the_move():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    slot102 = [step for step in plan_fix(state, {target: {102: 3}, source: {102: 4}}).steps if step.args[:1] == (102,)]
    assert (SETSLOT, target, "IMPORTING") == (slot102[0].action, slot102[0].node_id, slot102[0].args[1])
    assert (MOVE_KEYS, source) == (slot102[1].action, slot102[1].node_id)


def test_only_importing_moves_the_importers_keys_back():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    slot101 = [step for step in plan_fix(state, {target: {101: 2}}).steps if step.args[:1] == (101,)]
    assert [(s.action, s.node_id) for s in slot101] == [(MOVE_KEYS, target), (SETSLOT, target)]
    assert slot101[0].args[1].endswith(":%d" % state.by_id[source].port) and slot101[1].args[1] == "STABLE"


def test_finishing_open_slots_hands_over_only_the_moves_that_go_on():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    # 100 (open both ways) and 102 (keys already on the target) go to the target; 101 (only importing) and
    # 102 without keys on the target stay with the source.
    assert handed_over(plan_open_slots(state, {target: {102: 3}})) == {100: target, 102: target}
    assert handed_over(plan_open_slots(state, {})) == {100: target}


def test_unreachable_master_with_a_replica_is_taken_over_with_consent():
    state = cluster_from(read("master_fail.txt"), cluster_info="cluster_state:fail\r\n")
    dead = next(node for node in state.nodes if node.entry.failed)
    (replica,) = state.replicas_of(dead.id)
    with pytest.raises(PlanError, match="allow_unreachable_masters"):
        plan_fix(state, {})
    plan = plan_fix(state, {}, FixOptions(allow_unreachable_masters=True, forget_failed=True))
    # The replica holds the data: it takes over, nothing is reassigned, then the dead node is forgotten.
    assert [(s.action, s.node_id) for s in plan.steps][0] == (FAILOVER, replica.id)
    assert not [s for s in plan.steps if s.action in (SETSLOT, ADD_SLOTS)]
    forgets = [s for s in plan.steps if s.action == FORGET]
    assert {s.args for s in forgets} == {(dead.id,)} and len(forgets) == 5


def test_unreachable_master_without_replica_gives_its_slots_away_with_consent():
    text = read("master_fail.txt")
    dead_id = next(line.split()[0] for line in text.splitlines() if ",fail " in line)
    text = "\n".join(line for line in text.splitlines() if line.split()[3] != dead_id)
    state = cluster_from(text, cluster_info="cluster_state:fail\r\n")
    with pytest.raises(PlanError, match="allow_unreachable_masters"):
        plan_fix(state, {})
    plan = plan_fix(state, {}, FixOptions(allow_unreachable_masters=True, forget_failed=True))
    claims = [s for s in plan.steps if s.action == CLAIM_SLOTS]
    assert sum(last - first + 1 for s in claims for first, last in s.args) == 5461 and len({s.node_id for s in claims}) == 2
    # The survivors end up with shares as even as they can be.
    shares = {node.id: count_slots(node.entry.slots) for node in state.masters if node.reachable}
    for step in claims:
        shares[step.node_id] += sum(last - first + 1 for first, last in step.args)
    assert sum(shares.values()) == 16384 and max(shares.values()) - min(shares.values()) <= 1
    assert [s.action for s in plan.steps].count(BUMP_EPOCH) == 2
    assert {s.args for s in plan.steps if s.action == FORGET} == {(dead_id,)}


def test_epoch_collision_takes_new_epochs():
    text = read("healthy_hostnames.txt")
    lines = text.splitlines()
    masters = [line for line in lines if " master " in line or ",master " in line]
    # Give every master config epoch 1: two of the three must take new ones.
    fixed = []
    for line in lines:
        fields = line.split()
        if line in masters:
            fields[6] = "1"
        fixed.append(" ".join(fields))
    plan = plan_fix(cluster_from("\n".join(fixed)), {})
    bumped = [s.node_id for s in plan.steps if s.action == BUMP_EPOCH]
    ids = sorted(line.split()[0] for line in masters)
    assert bumped == ids[:2]


def test_an_importer_that_sees_no_owner_gets_every_owner_before_any_key_moves():
    # The importer's partner turned into a replica, so the importer's own view lost the owner of every slot it
    # imports (and gossip never fills an importing slot); it refuses any MIGRATE until it sees them all.
    text = read("healthy_hostnames.txt")
    healthy = cluster_from(text)
    owner, importer = "0207061c7cc83c610f23608ddf7b45456f5a532f", "9a534f2b7f979b777c66df6fa6eab378f19603de"
    gone = "29edeb679eed9be183ccc54e713b9841298f45f2"
    lines = []
    for line in text.splitlines():
        fields = line.split()
        fields[2] = ",".join(flag for flag in fields[2].split(",") if flag != "myself")
        if fields[0] == owner:
            fields[8:] = ["0-99", "102-5460"]
        if fields[0] == importer:
            fields[2] = "myself," + fields[2]
            fields += ["[100-<-%s]" % gone, "[101-<-%s]" % gone]
        lines.append(" ".join(fields))
    mine = healthy.by_id[importer].observation
    seen = observation_from_replies(mine.address, "\n".join(lines), OK_INFO, "")
    state = ClusterState(tuple(seen if obs.myself.id == importer else obs for obs in healthy.observations))
    steps = plan_fix(state, {importer: {100: 5, 101: 7}, owner: {100: 3, 101: 2}}).steps
    first_move = next(index for index, step in enumerate(steps) if step.action == MOVE_KEYS)
    owners = [index for index, step in enumerate(steps)
              if step.action == SETSLOT and step.node_id == importer and step.args[1:] == ("NODE", owner)]
    assert len(owners) == 2 and max(owners) < first_move
    moves = [(step.node_id, step.args[0]) for step in steps if step.action == MOVE_KEYS]
    assert moves == [(importer, 100), (importer, 101)]
