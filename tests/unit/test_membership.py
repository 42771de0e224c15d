# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Joining, leaving and replacing nodes (_membership): refusals, the master a replica follows, the steps."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils._membership import (
    best_master, drain_weights, find_node, meet_steps, refuse_removal, refuse_short_memory, refuse_unfit, rehome_steps,
    replacement_steps,
)
from ansible_collections.redisops.cluster.plugins.module_utils._planner import (
    FAILOVER, REPLICATE, WAIT_CONVERGED, WAIT_SYNCED, PlanError,
)
from ansible_collections.redisops.cluster.plugins.module_utils._shares import Move, apply_moves, rebalance
from ansible_collections.redisops.cluster.plugins.module_utils._slots import SLOT_COUNT
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, NodeAddress, NodeObservation, observation_from_replies,
)

OK_INFO = "cluster_state:ok\r\n"


def node_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def cluster(spec, down=(), info=None) -> ClusterState:
    """spec: (name, port, master name or None, 'first-last' slots or '', zone); names in down answer nothing and
    are flagged fail; info: {name: INFO text}."""
    lines = []
    for name, port, master, slots, _zone in spec:
        flags = ("slave" if master else "master") + (",fail" if name in down else "")
        lines.append("%s 127.0.0.1:%d@%d %s %s 0 0 %d connected %s" % (
            node_id(name), port, port + 10000, flags, node_id(master) if master else "-", port, slots))
    observations = []
    for name, port, _master, _slots, zone in spec:
        address = NodeAddress("127.0.0.1", port, (("zone", zone),) if zone else ())
        if name in down:
            observations.append(NodeObservation(address, reachable=False, error="Connection refused"))
            continue
        mine = "\n".join(line.replace(" master ", " myself,master ").replace(" slave ", " myself,slave ")
                         if line.startswith(node_id(name)) else line for line in lines)
        observations.append(observation_from_replies(address, mine, OK_INFO, (info or {}).get(name, "")))
    return ClusterState(tuple(observations))


THREE_ZONES = (
    ("a", 7000, None, "0-5460", "a"), ("b", 7001, None, "5461-10922", "b"), ("c", 7002, None, "10923-16383", "c"),
    ("ra", 7003, "b", "", "a"), ("rb", 7004, "c", "", "b"),
)


def node(state: ClusterState, name: str):
    return state.by_id[node_id(name)]


def fresh(port: int, zone: str = "", keys: int = 0, extra_line: str = "") -> NodeObservation:
    me = "%s :%d@%d myself,master - 0 0 0 connected" % (node_id("new%d" % port), port, port + 10000)
    keyspace = "# Keyspace\r\ndb0:keys=%d,expires=0,avg_ttl=0\r\n" % keys if keys else ""
    return observation_from_replies(NodeAddress("127.0.0.1", port, (("zone", zone),) if zone else ()),
                                    me + ("\n" + extra_line if extra_line else ""), OK_INFO, keyspace)


def joined(state: ClusterState, joining: NodeObservation) -> ClusterState:
    return ClusterState(state.observations + (joining,))


# --- finding nodes ---------------------------------------------------------------------------------------------

def test_a_node_is_found_by_id_prefix_or_address_and_none_when_unknown():
    state = cluster(THREE_ZONES)
    assert find_node(state, node_id("b")[:8]).id == node_id("b")
    assert find_node(state, "127.0.0.1:7004").id == node_id("rb")
    assert find_node(state, "127.0.0.1:7999") is None
    # Too short a prefix, or an address without its port, is refused rather than read as a node that is absent.
    for typo in (node_id("b")[:6], "127.0.0.1"):
        with pytest.raises(PlanError, match="neither host:port nor a node id"):
            find_node(state, typo)


# --- joining -------------------------------------------------------------------------------------------------

def test_a_new_node_must_be_empty_and_alone():
    state = cluster(THREE_ZONES)
    refuse_unfit(fresh(7100), state)
    with pytest.raises(PlanError, match="127.0.0.1:7101 holds 5 key"):
        refuse_unfit(fresh(7101, keys=5), state)
    stranger = "%s 10.9.9.9:6379@16379 master - 0 0 1 connected 0-100" % node_id("elsewhere")
    with pytest.raises(PlanError, match="another cluster \\(10.9.9.9:6379\\); run CLUSTER RESET"):
        refuse_unfit(fresh(7102, extra_line=stranger), state)
    with pytest.raises(PlanError, match="cannot reach 127.0.0.1:7103"):
        refuse_unfit(NodeObservation(NodeAddress("127.0.0.1", 7103), reachable=False, error="refused"), state)


def test_a_member_that_serves_slots_meets_the_new_node_even_when_the_new_one_sorts_first():
    joining = fresh(6999)
    state = joined(cluster(THREE_ZONES), joining)
    meet, wait = meet_steps(state, joining)
    assert meet.node_id == node_id("a") and meet.args == ("127.0.0.1", 6999, 16999)
    assert wait.action == WAIT_CONVERGED


def test_a_new_replica_follows_a_master_outside_its_zone_before_one_with_fewer_replicas():
    # a has no replica but shares zone a with the newcomer; b and c have one replica each.
    state = joined(cluster(THREE_ZONES), fresh(7100, zone="a"))
    masters = [node(state, name) for name in ("a", "b", "c")]
    chosen = best_master(state, state.by_id[node_id("new7100")], masters)
    assert chosen.id in (node_id("b"), node_id("c"))
    # b's replica sits in zone a like the newcomer; c's replica does not: the replicas of one master stay apart.
    assert chosen.id == node_id("c")


def test_with_no_zone_to_avoid_the_master_with_fewest_replicas_is_chosen():
    state = joined(cluster(THREE_ZONES), fresh(7100, zone="d"))
    chosen = best_master(state, state.by_id[node_id("new7100")], [node(state, n) for n in ("a", "b", "c")])
    assert chosen.id == node_id("a")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 2)), min_size=1, max_size=5),
       st.sampled_from("abc"))
def test_the_chosen_master_shares_no_zone_when_another_choice_exists(masters, zone):
    spec, port = [], 7000
    for index, (master_zone, replica_count) in enumerate(masters):
        name = "m%d" % index
        spec.append((name, port, None, "%d-%d" % (index, index) if index < len(masters) - 1
                     else "%d-%d" % (index, SLOT_COUNT - 1), master_zone))
        port += 1
        for replica in range(replica_count):
            spec.append(("r%d_%d" % (index, replica), port, name, "", "z%d" % port))
            port += 1
    state = joined(cluster(spec), fresh(7900, zone=zone))
    candidates = [state.by_id[node_id("m%d" % index)] for index in range(len(masters))]
    chosen = best_master(state, state.by_id[node_id("new7900")], candidates)
    others = [m for m in candidates if m.label_map.get("zone") != zone]
    if others:
        assert chosen.label_map.get("zone") != zone
        fewest = min(len(state.replicas_of(m.id)) for m in others)
        assert len(state.replicas_of(chosen.id)) == fewest


# --- leaving -------------------------------------------------------------------------------------------------

def test_the_last_master_serving_slots_is_never_removed():
    state = cluster((("a", 7000, None, "0-16383", ""), ("ra", 7001, "a", "", "")))
    with pytest.raises(PlanError, match="last master serving slots; add a master"):
        refuse_removal(state, node(state, "a"), force=True, min_replicas=0, allow_data_loss=True)


def test_a_replica_is_kept_for_min_replicas_unless_forced():
    state = cluster(THREE_ZONES)
    with pytest.raises(PlanError, match="leaves its master 127.0.0.1:7001 .* with 0 live replica.*min_replicas 1"):
        refuse_removal(state, node(state, "ra"), force=False, min_replicas=1, allow_data_loss=False)
    refuse_removal(state, node(state, "ra"), force=True, min_replicas=1, allow_data_loss=False)
    refuse_removal(state, node(state, "ra"), force=False, min_replicas=0, allow_data_loss=False)


def test_a_dead_replica_goes_without_force_and_a_dead_master_with_slots_needs_consent():
    state = cluster(THREE_ZONES, down=("ra", "c"))
    refuse_removal(state, node(state, "ra"), force=False, min_replicas=1, allow_data_loss=False)
    with pytest.raises(PlanError, match="unreachable and still serves 5461 slot.*redis_cluster_failover with node: "
                                        "127.0.0.1:7004.*allow_data_loss"):
        refuse_removal(state, node(state, "c"), force=False, min_replicas=1, allow_data_loss=False)
    refuse_removal(state, node(state, "c"), force=False, min_replicas=1, allow_data_loss=True)


def test_a_silent_node_the_cluster_has_not_failed_needs_force():
    spec = THREE_ZONES
    state = ClusterState(tuple(obs if obs.address.port != 7004 else
                               NodeObservation(obs.address, reachable=False, error="timeout")
                               for obs in cluster(spec).observations))
    with pytest.raises(PlanError, match="has not flagged it failed"):
        refuse_removal(state, node(state, "rb"), force=False, min_replicas=0, allow_data_loss=False)


def test_draining_into_too_little_memory_fails_with_the_numbers():
    mib = 1048576
    info = {"a": "used_memory:%d\r\nused_memory_dataset:%d\r\n# Keyspace\r\ndb0:keys=1000,expires=0,avg_ttl=0\r\n"
                 % (120 * mib, 100 * mib),
            "b": "used_memory:%d\r\nmaxmemory:%d\r\n" % (90 * mib, 100 * mib)}
    state = cluster(THREE_ZONES, info=info)
    moves = (Move(node_id("a"), node_id("b"), (0, 1)), Move(node_id("a"), node_id("c"), (2,)))
    keys = {0: 300, 1: 300, 2: 400}
    with pytest.raises(PlanError, match="127.0.0.1:7001 .* would receive 600 key\\(s\\), about 60.0 MiB, and has "
                                        "10.0 MiB free \\(maxmemory 100.0 MiB, used_memory 90.0 MiB\\)"):
        refuse_short_memory(state, node(state, "a"), moves, keys)
    # c has no maxmemory: no limit; a smaller share fits b.
    refuse_short_memory(state, node(state, "a"), (moves[1],), keys)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4000), min_size=2, max_size=6), st.data())
def test_a_drain_moves_only_the_leaving_masters_slots(sizes, data):
    cuts, first, holdings = [], 0, {}
    total = sum(sizes)
    for index, size in enumerate(sizes):
        last = SLOT_COUNT - 1 if index == len(sizes) - 1 else first + size * SLOT_COUNT // total - 1
        holdings["m%d" % index] = ((first, last),)
        first = last + 1
    leaving = "m%d" % data.draw(st.integers(0, len(sizes) - 1))
    moves = rebalance(holdings, drain_weights(holdings, leaving), 0, 0, {}, False)
    assert moves and all(move.source == leaving for move in moves)
    after = apply_moves(holdings, moves)
    assert after[leaving] == ()
    assert sum(last - first + 1 for ranges in after.values() for first, last in ranges) == SLOT_COUNT


def test_a_leaving_masters_replicas_follow_masters_outside_their_zone():
    state = cluster(THREE_ZONES + (("rc", 7005, "a", "", "b"),))
    steps = rehome_steps(state, node(state, "a"))
    assert [(s.action, s.node_id) for s in steps] == [(REPLICATE, node_id("rc")), (WAIT_SYNCED, node_id("rc"))]
    # rc sits in zone b: master b shares it; c's replica rb shares it too, which weighs less than sharing the master.
    assert steps[0].args == (node_id("c"),)


# --- replacing -----------------------------------------------------------------------------------------------

def test_replacing_a_live_master_syncs_waits_for_the_views_then_fails_over():
    state = joined(cluster(THREE_ZONES), fresh(7100))
    steps = replacement_steps(state, node(state, "a"), state.by_id[node_id("new7100")])
    assert [s.action for s in steps] == [REPLICATE, WAIT_SYNCED, WAIT_CONVERGED, FAILOVER, WAIT_CONVERGED]
    assert steps[0].args == (node_id("a"),) and steps[3].args == ("", "127.0.0.1:7000")


def test_replacing_a_replica_follows_its_master_and_a_dead_empty_master_the_neediest():
    state = joined(cluster(THREE_ZONES), fresh(7100))
    new = state.by_id[node_id("new7100")]
    steps = replacement_steps(state, node(state, "rb"), new)
    assert [(s.action, s.args) for s in steps] == [(REPLICATE, (node_id("c"),)), (WAIT_SYNCED, (node_id("c"),))]
    dead = cluster(THREE_ZONES + (("gone", 7009, None, "", "a"),), down=("gone",))
    state = joined(dead, fresh(7100))
    steps = replacement_steps(state, node(state, "gone"), state.by_id[node_id("new7100")])
    assert [(s.action, s.args) for s in steps] == [(REPLICATE, (node_id("a"),)), (WAIT_SYNCED, (node_id("a"),))]


def test_a_dead_master_that_still_serves_slots_is_not_replaced():
    state = joined(cluster(THREE_ZONES, down=("a",)), fresh(7100))
    with pytest.raises(PlanError, match="unreachable and still serves slots.*mode takeover"):
        replacement_steps(state, node(state, "a"), state.by_id[node_id("new7100")])
