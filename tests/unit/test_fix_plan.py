# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""plan_fix on captured cluster views: which owner each slot gets, and the order of the writes."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest
from test_topology import OK_INFO, cluster_from, observe, read, view_text

from ansible_collections.redisops.cluster.plugins.module_utils._planner import (
    ADD_SLOTS, BUMP_EPOCH, FAILOVER, FORGET, MIGRATE_SLOTS, MOVE_KEYS, PURGE_KEYS, SETSLOT, PlanError, handed_over,
)
from ansible_collections.redisops.cluster.plugins.module_utils._repair import FixOptions, plan_fix, plan_open_slots
from ansible_collections.redisops.cluster.plugins.module_utils._slots import count_slots, slots_from_ranges
from ansible_collections.redisops.cluster.plugins.module_utils._findings import assess
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, observation_from_replies, with_key_counts,
)

HEALTHY = read("healthy_hostnames.txt")
OWNER, SECOND, THIRD = ("0207061c7cc83c610f23608ddf7b45456f5a532f", "9a534f2b7f979b777c66df6fa6eab378f19603de",
                        "c99f61370c7bdfe1dc7d6eae5ce12bfbe9db3217")


def setslots(plan, slot: int) -> list:
    """(node id, subcommand, partner id) of every SETSLOT write of slot, in plan order."""
    return [(step.node_id, step.args[0], step.args[1]) for step in plan.steps
            if step.action == SETSLOT and slot in slots_from_ranges(step.args[2:])]


def touching(plan, slot: int) -> list:
    """(action, node id) of every step that writes slot, in plan order."""
    found = []
    for step in plan.steps:
        slots = {SETSLOT: lambda args: slots_from_ranges(args[2:]), ADD_SLOTS: slots_from_ranges,
                 MOVE_KEYS: lambda args: (args[0],), MIGRATE_SLOTS: lambda args: slots_from_ranges(args[4])}
        if step.action in slots and slot in slots[step.action](step.args):
            found.append((step.action, step.node_id))
    return found


def assert_no_step_to_itself(state, plan) -> None:
    for step in plan.steps:
        if step.action == SETSLOT:
            assert step.args[0] == "NODE" or step.args[1] != step.node_id, step.description
        if step.action in (MOVE_KEYS, MIGRATE_SLOTS):
            assert step.args[1 if step.action == MOVE_KEYS else 0] != step.node, step.description


def with_views(state: ClusterState, views: dict) -> ClusterState:
    """state with the own views of some nodes replaced: {node id: CLUSTER NODES text as it prints it}."""
    observations = []
    for obs in state.observations:
        if obs.myself is not None and obs.myself.id in views:
            obs = observation_from_replies(obs.address, views[obs.myself.id], OK_INFO, "")
        observations.append(obs)
    return ClusterState(tuple(observations))


def edited(text: str, node_id: str, slots: str = None, epoch: int = None, extra: str = "") -> str:
    """text with node_id's line given other slots, config epoch or open-slot fields."""
    lines = []
    for line in text.splitlines():
        fields = line.split()
        if fields[0] == node_id:
            if slots is not None:
                fields[8:] = slots.split()
            if epoch is not None:
                fields[6] = str(epoch)
            fields += extra.split()
        lines.append(" ".join(fields))
    return "\n".join(lines)


def open_state():
    """The captured cluster with slot 100 open both ways, 101 only importing and 102 only migrating."""
    source, target = observe("migrating_source.txt"), observe("importing_target.txt")
    opened = {source.myself.id: source, target.myself.id: target}
    healthy = cluster_from(read("healthy_hostnames.txt"))
    return ClusterState((source, target) + tuple(obs for obs in healthy.observations if obs.myself.id not in opened))


def test_healthy_cluster_needs_nothing():
    assert plan_fix(cluster_from(HEALTHY), {}).empty


def test_both_sides_open_is_finished_by_the_migration_engine():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    plan = plan_fix(state, {source: {100: 7}})
    assert touching(plan, 100) == [(MIGRATE_SLOTS, source)]
    (step,) = [s for s in plan.steps if s.action == MIGRATE_SLOTS]
    assert step.args[1] == target and "7 key(s) left" in step.description
    assert_no_step_to_itself(state, plan)


def test_only_migrating_without_keys_on_the_target_is_closed():
    state = open_state()
    source = state.observations[0].myself.id
    plan = plan_fix(state, {})
    assert setslots(plan, 102) == [(source, "STABLE", "")] and touching(plan, 102) == [(SETSLOT, source)]


def test_only_migrating_with_keys_already_moved_finishes_the_move():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    plan = plan_fix(state, {target: {102: 3}, source: {102: 4}})
    # The target imports the slot before the engine moves the rest; nobody else writes it.
    assert touching(plan, 102) == [(SETSLOT, target), (MIGRATE_SLOTS, source)]
    assert setslots(plan, 102) == [(target, "IMPORTING", source)]


def test_only_importing_moves_the_importers_keys_back():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    plan = plan_fix(state, {target: {101: 2}})
    assert touching(plan, 101) == [(MOVE_KEYS, target), (SETSLOT, target)]
    move = next(s for s in plan.steps if s.action == MOVE_KEYS)
    assert move.args[1].endswith(":%d" % state.by_id[source].port) and setslots(plan, 101) == [(target, "STABLE", "")]


def test_finishing_open_slots_hands_over_only_the_moves_that_go_on():
    state = open_state()
    source, target = (obs.myself.id for obs in state.observations[:2])
    # 100 (open both ways) and 102 (keys already on the target) go to the target; 101 (only importing) and
    # 102 without keys on the target stay with the source.
    assert handed_over(plan_open_slots(state, {target: {102: 3}})) == {100: target, 102: target}
    assert handed_over(plan_open_slots(state, {})) == {100: target}


def test_half_finished_hand_over_sent_to_the_source_only_goes_to_the_importer():
    """Redis' 20-half-migrated-slot case: keys moved, then SETSLOT NODE target sent to the source only. Nobody
    claims the slot: the source names the target, the target (importing) and the others name the source."""
    healthy = cluster_from(HEALTHY)
    source_view = edited(view_text(HEALTHY, OWNER), OWNER, slots="0-608 610-5460")
    source_view = edited(source_view, SECOND, slots="609 5461-10922")
    target_view = edited(view_text(HEALTHY, SECOND), SECOND, extra="[609-<-%s]" % OWNER)
    state = with_views(healthy, {OWNER: source_view, SECOND: target_view})
    assert 609 not in state.ownership.covered
    plan = plan_fix(state, {SECOND: {609: 151}})
    # The importer, which holds every key, claims the slot; no key moves; the third master is told.
    assert touching(plan, 609) == [(SETSLOT, SECOND), (SETSLOT, THIRD)]
    assert setslots(plan, 609) == [(SECOND, "NODE", SECOND), (THIRD, "NODE", SECOND)]
    assert [s.node_id for s in plan.steps if s.action == BUMP_EPOCH] == [SECOND]
    assert_no_step_to_itself(state, plan)


def test_half_finished_hand_over_sent_to_the_target_only_closes_the_source():
    """SETSLOT NODE target sent to the target only: it claims with a new epoch while the source still claims and
    migrates the slot. The newer claim wins; the source sends what it still holds, then hands the slot over."""
    healthy = cluster_from(HEALTHY)
    source_view = edited(view_text(HEALTHY, OWNER), OWNER, extra="[609->-%s]" % SECOND)
    target_view = edited(view_text(HEALTHY, SECOND), SECOND, slots="609 5461-10922", epoch=9)
    state = with_views(healthy, {OWNER: source_view, SECOND: target_view})
    plan = plan_fix(state, {OWNER: {609: 4}, SECOND: {609: 147}})
    assert touching(plan, 609) == [(MOVE_KEYS, OWNER), (SETSLOT, OWNER), (SETSLOT, THIRD)]
    assert setslots(plan, 609) == [(OWNER, "NODE", SECOND), (THIRD, "NODE", SECOND)]
    assert_no_step_to_itself(state, plan)


def test_an_owner_that_dropped_its_slots_claims_them_back_before_keys_move():
    """DELSLOTS on the owner of 16380-16383 (it holds keys in two), plus slot 100 left half-moved from it."""
    healthy = cluster_from(HEALTHY)
    owner_view = edited(view_text(HEALTHY, THIRD), THIRD, slots="10923-16379", extra="[100-<-%s]" % OWNER)
    source_view = edited(view_text(HEALTHY, OWNER), OWNER, extra="[100->-%s]" % THIRD)
    state = with_views(healthy, {THIRD: owner_view, OWNER: source_view})
    plan = plan_fix(state, {THIRD: {16381: 5, 16383: 2, 100: 10}, OWNER: {100: 40}})
    first_key_move = next(i for i, s in enumerate(plan.steps) if s.action in (MOVE_KEYS, MIGRATE_SLOTS))
    (add,) = [(i, s) for i, s in enumerate(plan.steps) if s.action == ADD_SLOTS]
    assert add[1].node_id == THIRD and add[1].args == ((16380, 16383),) and add[0] < first_key_move
    assert touching(plan, 100) == [(MIGRATE_SLOTS, OWNER)]
    assert_no_step_to_itself(state, plan)


def test_contested_slot_goes_to_the_claim_with_the_highest_epoch():
    healthy = cluster_from(HEALTHY)
    bystander_view = edited(view_text(HEALTHY, THIRD), THIRD, slots="5 10923-16383", epoch=1)
    state = with_views(healthy, {THIRD: bystander_view})
    plan = plan_fix(state, {OWNER: {5: 3}, THIRD: {5: 1}})
    # The owner (epoch 1, smaller id than the bystander's, which also has epoch 1) keeps it.
    assert touching(plan, 5) == [(MOVE_KEYS, THIRD), (SETSLOT, THIRD)]
    assert setslots(plan, 5) == [(THIRD, "NODE", OWNER)]
    assert [s.node_id for s in plan.steps if s.action == BUMP_EPOCH][:1] == [OWNER]


def test_unreachable_master_with_a_replica_is_taken_over_with_consent():
    state = cluster_from(read("master_fail.txt"), cluster_info="cluster_state:fail\r\n")
    dead = next(node for node in state.nodes if node.entry.failed)
    (replica,) = state.replicas_of(dead.id)
    with pytest.raises(PlanError, match="allow_unreachable_masters"):
        plan_fix(state, {})
    plan = plan_fix(state, {}, FixOptions(allow_unreachable_masters=True, forget_failed=True))
    # The replica holds the data: it takes over, nothing is reassigned, then the dead node is forgotten.
    assert [(s.action, s.node_id) for s in plan.steps][0] == (FAILOVER, replica.id)
    assert not [s for s in plan.steps if s.action in (SETSLOT, ADD_SLOTS, MOVE_KEYS)]
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
    claims = [s for s in plan.steps if s.action == SETSLOT and s.args[:2] == ("NODE", s.node_id)]
    assert sum(count_slots(s.args[2:]) for s in claims) == 5461 and len({s.node_id for s in claims}) == 2
    # The survivors end up with shares as even as they can be.
    shares = {node.id: count_slots(node.entry.slots) for node in state.masters if node.reachable}
    for step in claims:
        shares[step.node_id] += count_slots(step.args[2:])
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
              if step.action == SETSLOT and step.node_id == importer and step.args[:2] == ("NODE", owner)
              and {100, 101} <= set(slots_from_ranges(step.args[2:]))]
    assert len(owners) == 1 and owners[0] < first_move
    moves = [(step.node_id, step.args[0]) for step in steps if step.action == MOVE_KEYS]
    assert moves == [(importer, 100), (importer, 101)]


def test_an_owner_that_migrates_the_slot_is_closed_before_keys_come_back_to_it():
    """A migrating owner answers ASK to a RESTORE of a key it lacks: it must be stable before strays return."""
    healthy = cluster_from(HEALTHY)
    owner_view = edited(view_text(HEALTHY, OWNER), OWNER, extra="[5->-%s]" % SECOND)
    state = with_views(healthy, {OWNER: owner_view})
    plan = plan_fix(state, {OWNER: {5: 3}, THIRD: {5: 2}})
    assert touching(plan, 5) == [(SETSLOT, OWNER), (SETSLOT, THIRD), (MOVE_KEYS, THIRD), (SETSLOT, THIRD)]
    assert setslots(plan, 5) == [(OWNER, "STABLE", ""), (THIRD, "IMPORTING", OWNER), (THIRD, "STABLE", "")]


def test_a_target_that_names_nobody_for_the_slot_it_imports_is_told_the_source_first():
    """DELSLOTS on the target, then IMPORTING: it sees the slot unserved, which no gossip fills while it imports,
    and refuses the engine's RESTOREs until it names the source."""
    healthy = cluster_from(HEALTHY)
    source_view = edited(view_text(HEALTHY, OWNER), OWNER, extra="[5->-%s]" % SECOND)
    target_view = edited(edited(view_text(HEALTHY, SECOND), OWNER, slots="0-4 6-5460"), SECOND,
                         extra="[5-<-%s]" % OWNER)
    state = with_views(healthy, {OWNER: source_view, SECOND: target_view})
    plan = plan_fix(state, {OWNER: {5: 56}})
    assert touching(plan, 5) == [(SETSLOT, SECOND), (MIGRATE_SLOTS, OWNER)]
    assert setslots(plan, 5) == [(SECOND, "NODE", OWNER)]


def linked(state: ClusterState, down=()) -> ClusterState:
    """state with every replica's link to its master up, except the replicas in down."""
    return ClusterState(tuple(
        dataclasses.replace(obs, info=MappingProxyType({"master_link_status": "down" if obs.myself.id in down else "up"}))
        if obs.myself is not None and obs.myself.is_replica else obs for obs in state.observations))


def test_keys_a_replica_holds_of_slots_its_master_does_not_serve_are_deleted_through_the_master_last():
    state = linked(cluster_from(HEALTHY))
    master = state.by_id[SECOND]
    replica, = state.replicas_of(SECOND)
    served = slots_from_ranges(master.entry.slots)
    owned_elsewhere = [slot for slot in (0, 1, 2, 16383) if slot not in served]
    lost, stray = owned_elsewhere[:2]
    own_slot = served[0]
    # The master's own stray keys of one slot go to the owner as keys move; its replica has them from it.
    master_counts = {SECOND: {stray: 2}}
    counted = with_key_counts(state, {**master_counts, replica.id: {lost: 5, stray: 2, own_slot: 7}})
    assert next(obs for obs in counted.observations if obs.myself.id == replica.id).foreign_keys == ((lost, 5),)
    (finding,) = [f for f in assess(counted) if f.kind == "replica_stray_keys"]
    assert finding.severity == "warning" and finding.nodes == (replica.id,) and "5 key(s)" in finding.message
    plan = plan_fix(counted, master_counts)
    actions = [step.action for step in plan.steps]
    purge = plan.steps[actions.index(PURGE_KEYS)]
    assert actions.count(PURGE_KEYS) == 1 and actions.index(MOVE_KEYS) < actions.index(PURGE_KEYS)
    assert purge.node_id == SECOND and purge.args == (replica.address, state.slot_owners[lost], (lost, lost))
    # A replica whose link is down may be behind: its keys are not counted as strays.
    unlinked = with_key_counts(linked(state, down=(replica.id,)), {replica.id: {lost: 5}})
    assert not [f for f in assess(unlinked) if f.kind == "replica_stray_keys"]
    assert PURGE_KEYS not in [step.action for step in plan_fix(unlinked, {}).steps]
