# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""plan_fix against a model of Redis' slot commands and gossip: every step accepted, no key lost, one run converges."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_model import Cluster, CommandError

from ansible_collections.redisops.cluster.plugins.module_utils._planner import (
    ADD_SLOTS, BUMP_EPOCH, MIGRATE_SLOTS, MOVE_KEYS, SETSLOT, WAIT_CONVERGED,
)
from ansible_collections.redisops.cluster.plugins.module_utils._repair import fix_key_count_slots, plan_fix
from ansible_collections.redisops.cluster.plugins.module_utils._slots import SLOT_COUNT, slots_from_ranges
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, NodeAddress, observation_from_replies, unsettled,
)

IDS = tuple(str(digit) * 40 for digit in range(1, 6))
# plan_fix and the key counts it asks for walk all 16384 slots several times (about 0.3 s a plan): this keeps the
# property near half a minute while the planner passes it.
MAX_EXAMPLES = 50


class Refused(AssertionError):
    """A plan step the model (as Redis) refused, or a wait that could never end."""


# --- the planner's input, rendered from the model ----------------------------------------------------------

def observe(cluster: Cluster) -> ClusterState:
    """What observe_cluster would read from every node."""
    return ClusterState(tuple(
        observation_from_replies(NodeAddress("127.0.0.1", node.port), cluster.cluster_nodes(node_id),
                                 cluster.cluster_info(node_id), cluster.info(node_id))
        for node_id, node in sorted(cluster.nodes.items())))


def key_counts(cluster: Cluster, state: ClusterState) -> dict:
    """{node id: {slot: keys}} as count_keys gathers them for plan_fix: non-zero counts of the slots it asks for."""
    slots_for = fix_key_count_slots(state)
    counts = {}
    for obs in state.configured:
        if obs.myself.is_master:
            node = cluster.nodes[obs.myself.id]
            wanted = set(slots_for(obs))
            counts[node.id] = {slot: count for slot, count in node.keys.items() if slot in wanted}
    return counts


def plan_for(cluster: Cluster):
    state = observe(cluster)
    return plan_fix(state, key_counts(cluster, state))


# --- the executor's steps, as commands to the model ------------------------------------------------------------

def run_step(cluster: Cluster, step) -> None:
    """One plan step as _executor.HANDLERS sends it (a wait: gossip until nothing changes, then unsettled())."""
    by_address = {"127.0.0.1:%d" % node.port: node_id for node_id, node in cluster.nodes.items()}
    node_id = by_address.get(step.node, "")
    try:
        if step.action == ADD_SLOTS:
            cluster.addslots(node_id, slots_from_ranges(step.args))
        elif step.action == SETSLOT:
            # One pipeline: every command runs, the first error fails the step.
            errors = []
            for slot in slots_from_ranges(step.args[2:]):
                try:
                    run_setslot(cluster, node_id, slot, step.args[0], step.args[1])
                except CommandError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
        elif step.action == MIGRATE_SLOTS:
            migrate_slots(cluster, node_id, by_address[step.args[0]], slots_from_ranges(step.args[4]))
        elif step.action == MOVE_KEYS:
            move_keys(cluster, node_id, by_address[step.args[1]], step.args[0])
        elif step.action == BUMP_EPOCH:
            cluster.bumpepoch(node_id)
        elif step.action == WAIT_CONVERGED:
            cluster.settle()
            problem = unsettled(observe(cluster).observations)
            if problem:
                raise Refused("%s: never ends: %s" % (step.description, problem))
        else:
            raise Refused("%s: the model has no %s" % (step.description, step.action))
    except CommandError as exc:
        raise Refused("%s: %s" % (step.description, exc)) from None


def run_setslot(cluster: Cluster, node_id: str, slot: int, how: str, other: str = "") -> None:
    commands = {"IMPORTING": cluster.setslot_importing, "MIGRATING": cluster.setslot_migrating,
                "NODE": cluster.setslot_node}
    if how == "STABLE":
        cluster.setslot_stable(node_id, slot)
    else:
        commands[how](node_id, slot, other)


def move_keys(cluster: Cluster, source: str, target: str, slot: int) -> None:
    """move_slot_keys: MIGRATE until the source holds none; a CLUSTERDOWN is retried while gossip flows
    (_while_cluster_down), any other refusal fails."""
    while cluster.nodes[source].count(slot):
        try:
            cluster.migrate(source, target, slot, cluster.nodes[source].count(slot))
        except CommandError as exc:
            if "CLUSTERDOWN" not in str(exc):
                raise
            cluster.settle()
            cluster.migrate(source, target, slot, cluster.nodes[source].count(slot))


def migrate_slots(cluster: Cluster, source: str, target: str, slots) -> None:
    """_migrate.move_slots on one batch: open both sides, empty the slots, then hand them over on the target (every
    slot but the last made STABLE first, so only the last bumps the epoch), the source, and the other masters
    (STABLE, then NODE)."""
    for slot in slots:
        cluster.setslot_importing(target, slot, source)
        cluster.setslot_migrating(source, slot, target)
    for slot in slots:
        move_keys(cluster, source, target, slot)
    for slot in slots[:-1]:
        cluster.setslot_stable(target, slot)
        cluster.setslot_node(target, slot, target)
    cluster.setslot_node(target, slots[-1], target)
    for slot in slots:
        cluster.setslot_node(source, slot, target)
    for other, node in sorted(cluster.nodes.items()):
        if node.is_master and other not in (source, target):
            for slot in slots:
                cluster.setslot_stable(other, slot)
                cluster.setslot_node(other, slot, target)


# --- the properties ----------------------------------------------------------------------------------------------

def repair(cluster: Cluster, gossip_between=lambda: ()) -> None:
    """Plan from the model's state, run every step (with gossip_between() delivered after each), settle, and check:
    no key lost, every slot served by one master that every view names, nothing open, and nothing left to plan.
    Keys are counted in the state given: what Redis deleted while the cluster was being broken is not the plan's."""
    keys = cluster.total_keys()
    plan = plan_for(cluster)
    for step in plan.steps:
        run_step(cluster, step)
        for sender, receiver in gossip_between():
            cluster.ping(sender, receiver)
    cluster.settle()
    assert cluster.total_keys() == keys, "keys lost: %d of %d left" % (cluster.total_keys(), keys)
    check_sound(cluster)
    again = plan_for(cluster)
    assert again.empty, "a second run still plans: %s" % again.describe()


def check_sound(cluster: Cluster) -> None:
    """Every view names a master for every slot, all views agree, and no slot is open anywhere."""
    tables = {node_id: node.table.owners for node_id, node in cluster.nodes.items()}
    masters = {node_id for node_id, node in cluster.nodes.items() if node.is_master}
    for node_id, owners in tables.items():
        uncovered = SLOT_COUNT - len(owners)
        assert not uncovered, "%s names no owner for %d slot(s)" % (node_id[:8], uncovered)
        assert set(owners.values()) <= masters, "%s names a replica as an owner" % node_id[:8]
    first = min(tables)
    disagree = sorted(node_id[:8] for node_id, owners in tables.items() if owners != tables[first])
    assert not disagree, "the views of %s differ from %s's" % (", ".join(disagree), first[:8])
    opened = {node_id[:8]: (node.migrating, node.importing) for node_id, node in cluster.nodes.items()
              if node.migrating or node.importing}
    assert not opened, "slots left open: %s" % opened


# --- generated broken states -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scenario:
    """A formed cluster of masters (nodes named by index) with keys on each slot's owner, broken by raw commands in
    order (what Redis refuses changes nothing), then some pings delivered, and fully settled if settled: the state a
    fix run observes."""

    masters: int
    keys: tuple  # (slot, key count) pairs
    commands: tuple  # (command, node, slot, other node, share of the keys a MIGRATE moves)
    pings: tuple  # (sender, receiver)
    settled: bool

    def build(self) -> Cluster:
        cluster = Cluster.formed(IDS[:self.masters], dict(self.keys))
        for command in self.commands:
            try:
                apply_raw(cluster, *command)
            except CommandError:
                pass
        for sender, receiver in self.pings:
            cluster.ping(IDS[sender], IDS[receiver])
        if self.settled:
            cluster.settle()
        return cluster


def apply_raw(cluster: Cluster, name: str, node: int, slot: int, other: int, share: float) -> None:
    node_id, other_id = IDS[node], IDS[other]
    if name in ("IMPORTING", "MIGRATING", "NODE", "STABLE"):
        run_setslot(cluster, node_id, slot, name, other_id)
    elif name == "DELSLOTS":
        cluster.delslots(node_id, [slot])
    elif name == "ADDSLOTS":
        cluster.addslots(node_id, [slot])
    elif name == "BUMPEPOCH":
        cluster.bumpepoch(node_id)
    elif name == "MIGRATE" and node != other and cluster.nodes[node_id].count(slot):
        cluster.migrate(node_id, other_id, slot, max(1, int(cluster.nodes[node_id].count(slot) * share)))


def node_pairs(masters: int, max_size: int):
    pair = st.tuples(st.integers(0, masters - 1), st.integers(0, masters - 1)).filter(lambda p: p[0] != p[1])
    return st.lists(pair, max_size=max_size).map(tuple)


@st.composite
def scenarios(draw):
    """3-5 masters, keys in a few slots (and one keyless slot), commands on those slots."""
    masters = draw(st.integers(3, 5))
    slots = draw(st.lists(st.integers(0, SLOT_COUNT - 1), min_size=3, max_size=5, unique=True))
    keys = tuple((slot, draw(st.integers(1, 12))) for slot in slots[1:])
    node = st.integers(0, masters - 1)
    command = st.tuples(st.sampled_from(("IMPORTING", "MIGRATING", "NODE", "STABLE", "DELSLOTS", "ADDSLOTS",
                                         "MIGRATE", "MIGRATE", "BUMPEPOCH")),
                        node, st.sampled_from(slots), node, st.sampled_from((0.3, 0.5, 1.0)))
    commands = tuple(draw(st.lists(command, min_size=1, max_size=8)))
    return Scenario(masters, keys, commands, draw(node_pairs(masters, 8)), draw(st.booleans()))


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
@given(scenarios(), st.data())
def test_fix_repairs_every_generated_state_in_one_run(scenario, data):
    """Between two steps the nodes may exchange a few pings, as they do while a real run goes on."""
    pings = node_pairs(scenario.masters, 3)
    repair(scenario.build(), lambda: [(IDS[a], IDS[b]) for a, b in data.draw(pings)])


# --- named cases -------------------------------------------------------------------------------------------------

SLOT = 609


def moved_keys(masters: int, keys: int = 151, moved: int = 151, more_keys=()) -> tuple:
    """SLOT open from its owner (source) to the next master (target), moved of its keys moved; more_keys:
    (slot, count) pairs held by their owners."""
    cluster = Cluster.formed(IDS[:masters], dict(((SLOT, keys),) + tuple(more_keys)))
    source = cluster.nodes[IDS[0]].table.owner(SLOT)
    target = next(node_id for node_id in IDS[:masters] if node_id != source)
    cluster.setslot_importing(target, SLOT, source)
    cluster.setslot_migrating(source, SLOT, target)
    if moved:
        cluster.migrate(source, target, SLOT, moved)
    return cluster, source, target


def test_model_half_finished_hand_over_leaves_the_slot_unclaimed():
    cluster, source, target = moved_keys(2)
    cluster.setslot_node(source, SLOT, target)
    cluster.settle()
    assert cluster.nodes[source].table.owner(SLOT) == target
    assert cluster.nodes[target].table.owner(SLOT) == source  # importing: gossip never rebinds it
    assert SLOT not in cluster.nodes[source].own_slots | cluster.nodes[target].own_slots


@pytest.mark.parametrize("masters", [2, 3])
@pytest.mark.parametrize("told", ["source", "target"])
def test_half_finished_hand_over(masters, told):
    """Every key moved, then SETSLOT NODE target sent to one side only."""
    cluster, source, target = moved_keys(masters)
    cluster.setslot_node(source if told == "source" else target, SLOT, target)
    cluster.settle()
    if told == "target":
        assert cluster.nodes[source].migrating == {SLOT: target}  # gossip closes nothing
    repair(cluster)


def test_both_sides_open_with_some_keys_moved():
    cluster, _source, _target = moved_keys(3, keys=50, moved=10)
    cluster.settle()
    repair(cluster)


def test_delslots_on_an_owner_that_holds_keys():
    cluster = Cluster.formed(IDS[:3], {16381: 5, 16383: 2})
    owner = cluster.nodes[IDS[0]].table.owner(16381)
    cluster.delslots(owner, [16380, 16381, 16382, 16383])
    cluster.settle()
    assert not cluster.nodes[owner].cluster_ok and cluster.nodes[IDS[0]].table.owner(16381) == owner
    repair(cluster)


def test_compound_breakage_open_slot_and_dropped_slots():
    cluster, _source, _target = moved_keys(3, keys=50, moved=10, more_keys=((16381, 4), (16383, 3)))
    owner = cluster.nodes[IDS[0]].table.owner(16381)
    cluster.delslots(owner, [16380, 16381, 16382, 16383])
    cluster.settle()
    repair(cluster)


def test_multiple_owners_before_gossip():
    cluster, source, target = moved_keys(3, keys=20, moved=8)
    cluster.setslot_stable(source, SLOT)
    cluster.setslot_stable(target, SLOT)
    cluster.setslot_node(target, SLOT, target)  # no import left: no epoch bump, both claim with their own epoch
    assert SLOT in cluster.nodes[source].own_slots and SLOT in cluster.nodes[target].own_slots
    repair(cluster)


def test_model_a_higher_epoch_claim_deletes_the_losers_keys():
    cluster, source, target = moved_keys(3, keys=20, moved=8)
    cluster.setslot_stable(source, SLOT)
    cluster.setslot_stable(target, SLOT)
    cluster.setslot_node(target, SLOT, target)
    cluster.bumpepoch(target)
    cluster.settle()
    assert cluster.nodes[source].count(SLOT) == 0 and cluster.total_keys() == 8


# --- the model itself: Redis' refusals --------------------------------------------------------------------------

def test_model_refuses_what_redis_refuses():
    cluster = Cluster.formed(IDS[:3], {SLOT: 3})
    owner, other, third = IDS[0], IDS[1], IDS[2]
    refusals = [
        (lambda: cluster.setslot_importing(owner, SLOT, other), "I'm already the owner of hash slot 609"),
        (lambda: cluster.setslot_migrating(other, SLOT, owner), "I'm not the owner of hash slot 609"),
        (lambda: cluster.setslot_node(owner, SLOT, other), "Can't assign hashslot 609 to a different node"),
        (lambda: cluster.addslots(other, [SLOT]), "Slot 609 is already busy"),
        (lambda: cluster.migrate(owner, other, SLOT, 1), "Target instance replied with error: MOVED 609"),
    ]
    for command, error in refusals:
        with pytest.raises(CommandError, match=re.escape(error)):
            command()
    cluster.delslots(third, [SLOT])  # local: the owner still serves it, the third node now names nobody
    assert cluster.nodes[owner].table.owner(SLOT) == owner and not cluster.nodes[third].cluster_ok
    cluster.setslot_importing(third, SLOT, owner)
    with pytest.raises(CommandError, match="Target instance replied with error: CLUSTERDOWN Hash slot not served"):
        cluster.migrate(owner, third, SLOT, 1)


def test_model_hand_over_bumps_the_importing_target_and_spreads():
    cluster, source, target = moved_keys(3)
    assert cluster.nodes[source].count(SLOT) == 0 and cluster.nodes[target].count(SLOT) == 151
    cluster.setslot_node(target, SLOT, target)
    assert cluster.nodes[target].config_epoch == 4 and not cluster.nodes[target].importing
    cluster.settle()
    assert all(node.table.owner(SLOT) == target for node in cluster.nodes.values())
    assert cluster.nodes[source].migrating == {SLOT: target}  # only SETSLOT closes it


def test_model_a_slot_its_owner_stops_claiming_goes_to_any_claimant():
    # Seen on redis-server 7.0.15: after DELSLOTS on the owner, a claim with a lower epoch wins everywhere.
    cluster = Cluster.formed(IDS[:3])
    owner, claimant = IDS[2], IDS[0]
    cluster.delslots(owner, [16000])
    cluster.settle()
    cluster.setslot_node(claimant, 16000, claimant)
    cluster.settle()
    assert all(node.table.owner(16000) == claimant for node in cluster.nodes.values())


def test_model_a_bystanders_stale_owner_is_corrected_by_the_real_owner():
    # Seen on redis-server 7.0.15: SETSLOT NODE on a bystander naming a newer master does not last.
    cluster = Cluster.formed(IDS[:3])
    cluster.setslot_node(IDS[1], 641, IDS[2])
    cluster.settle()
    assert all(node.table.owner(641) == IDS[0] for node in cluster.nodes.values())
