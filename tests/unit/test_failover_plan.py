# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Failover plans: the best replica, the gates before a default failover, the modes, placement restore."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils._failover import (
    Shard, best_replica, layout, placement_cost, plan_master_failover, plan_promotion, plan_restore, restore_choices,
    with_promoted,
)
from ansible_collections.redisops.cluster.plugins.module_utils._placement import Candidate
from ansible_collections.redisops.cluster.plugins.module_utils._planner import FAILOVER, WAIT_CONVERGED, PlanError
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, NodeAddress, NodeObservation, observation_from_replies,
)

SLOTS = ("0-5460", "5461-10922", "10923-16383")


@dataclasses.dataclass
class Spec:
    """One node of a made-up cluster: a master (slots) or a replica of the master on port master."""

    port: int
    master: int = 0
    slots: str = ""
    zone: str = ""
    offset: int = 1000
    link: str = "up"
    down: bool = False
    flag: str = ""  # what the other nodes flag it: 'fail' or 'fail?'


def node_id(port: int) -> str:
    return ("%d" % port) * 10


def address(port: int) -> str:
    return "127.0.0.1:%d" % port


def state_of(specs, cluster_state: str = "ok") -> ClusterState:
    """Every reachable node's view (all agree), with INFO replication as each spec says."""
    observations = []
    for me in specs:
        labels = (("zone", me.zone),) if me.zone else ()
        where = NodeAddress("127.0.0.1", me.port, labels)
        if me.down:
            observations.append(NodeObservation(where, reachable=False, error="Connection refused"))
            continue
        lines = []
        for spec in specs:
            flags = (["myself"] if spec is me else []) + ["slave" if spec.master else "master"]
            flags += [spec.flag] if spec.flag and spec is not me else []
            lines.append("%s 127.0.0.1:%d@%d %s %s 0 0 1 connected %s" % (
                node_id(spec.port), spec.port, spec.port + 10000, ",".join(flags),
                node_id(spec.master) if spec.master else "-", spec.slots))
        if me.master:
            info = "role:slave\r\nmaster_link_status:%s\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:%d\r\n" % (
                me.link, me.offset)
        else:
            info = "role:master\r\nmaster_repl_offset:%d\r\n" % me.offset
        observations.append(observation_from_replies(where, "\n".join(lines), "cluster_state:%s\r\n" % cluster_state,
                                                     info))
    return ClusterState(tuple(observations))


def six(**changes) -> list:
    """Masters 7001-7003 (zones a, b, c), replicas 7004-7006 of them (zones b, c, a); changes: port -> fields."""
    specs = [Spec(7001, slots=SLOTS[0], zone="a"), Spec(7002, slots=SLOTS[1], zone="b"),
             Spec(7003, slots=SLOTS[2], zone="c"), Spec(7004, master=7001, zone="b"),
             Spec(7005, master=7002, zone="c"), Spec(7006, master=7003, zone="a")]
    return [dataclasses.replace(spec, **changes.get("p%d" % spec.port, {})) for spec in specs]


def node(state: ClusterState, port: int):
    return state.by_id[node_id(port)]


def failovers(decision) -> list:
    return [(step.node, step.args) for step in decision.plan.steps if step.action == FAILOVER]


# --- a named replica ------------------------------------------------------------------------------------

def test_a_synced_replica_fails_over_by_default_then_the_cluster_settles():
    state = state_of(six())
    decision = plan_promotion(state, node(state, 7004), "default", 1024)
    assert failovers(decision) == [(address(7004), ("", address(7001)))]
    assert decision.plan.steps[-1].action == WAIT_CONVERGED and not decision.plan.empty
    assert decision.failovers[0]["master"] == address(7001) and decision.failovers[0]["lag"] == 0
    assert "0 bytes behind" in decision.plan.steps[0].description


def test_a_master_serving_slots_needs_nothing_and_an_empty_master_or_its_replica_is_refused():
    specs = six() + [Spec(7007), Spec(7008, master=7007)]
    state = state_of(specs)
    assert plan_promotion(state, node(state, 7001), "default", 1024).plan.steps == ()
    with pytest.raises(PlanError, match="127.0.0.1:7007 .* master that serves no slot"):
        plan_promotion(state, node(state, 7007), "default", 1024)
    with pytest.raises(PlanError, match="7008 .* replicates 127.0.0.1:7007 .* which serves no slot"):
        plan_promotion(state, node(state, 7008), "force", 1024)


@pytest.mark.parametrize("changes, expected", [
    (dict(p7001=dict(down=True)), "7001 .* cannot be reached .* use mode force"),
    (dict(p7001=dict(flag="fail")), "7001 .* flagged failing by .* use mode force"),
    (dict(p7004=dict(link="down")), "7004 .* master_link_status:down; .* wait until it has synced"),
    (dict(p7004=dict(flag="fail?")), "7004 .* flagged failing"),
    (dict(p7001=dict(offset=5000), p7004=dict(offset=1000)), "7004 .* is 4000 bytes behind .* max_lag 1024"),
])
def test_a_default_failover_is_refused_naming_the_node_and_what_to_do(changes, expected):
    state = state_of(six(**changes))
    with pytest.raises(PlanError, match=expected):
        plan_promotion(state, node(state, 7004), "default", 1024)


def test_a_cluster_that_is_not_ok_refuses_a_default_failover():
    state = state_of(six(), cluster_state="fail")
    with pytest.raises(PlanError, match="cluster_state is not ok on .*redis_cluster_fix"):
        plan_promotion(state, node(state, 7004), "default", 1024)


def test_force_and_takeover_are_refused_while_a_default_failover_can_go_ahead():
    state = state_of(six())
    for mode in ("force", "takeover"):
        with pytest.raises(PlanError, match="use mode default, which loses no write"):
            plan_promotion(state, node(state, 7004), mode, 1024)


def test_force_takes_over_from_a_master_that_is_down_and_waits_while_the_rest_is_up():
    state = state_of(six(p7001=dict(down=True, flag="fail"), p7004=dict(link="down")))
    decision = plan_promotion(state, node(state, 7004), "force", 1024)
    # The old master cannot be asked for its role: only the replica's ROLE is checked.
    assert failovers(decision) == [(address(7004), ("FORCE", ""))]
    assert decision.plan.steps[-1].action == WAIT_CONVERGED and decision.plan.warnings == ()


def test_takeover_with_another_master_down_too_does_not_wait_for_a_cluster_that_cannot_settle():
    state = state_of(six(p7001=dict(down=True), p7002=dict(down=True), p7004=dict(link="down"),
                         p7005=dict(link="down")), cluster_state="fail")
    decision = plan_promotion(state, node(state, 7004), "takeover", 1024)
    assert failovers(decision) == [(address(7004), ("TAKEOVER", ""))]
    assert [step.action for step in decision.plan.steps] == [FAILOVER]
    assert "127.0.0.1:7002" in decision.plan.warnings[0] and "stays fail" in decision.plan.warnings[0]


def test_an_unreachable_replica_cannot_be_promoted_in_any_mode():
    state = state_of(six(p7001=dict(down=True), p7004=dict(down=True)))
    with pytest.raises(PlanError, match="7004 .* cannot be reached, and CLUSTER FAILOVER must be sent to it"):
        plan_promotion(state, node(state, 7004), "force", 1024)


# --- the best replica of a master -------------------------------------------------------------------------

def three_replicas(**changes) -> list:
    """six() and two more replicas of 7001: 7007 in zone b (with 7002), 7008 in zone d (alone)."""
    specs = six() + [Spec(7007, master=7001, zone="b"), Spec(7008, master=7001, zone="d")]
    return [dataclasses.replace(spec, **changes.get("p%d" % spec.port, {})) for spec in specs]


def test_the_best_replica_has_the_smallest_lag():
    state = state_of(three_replicas(p7004=dict(offset=990), p7007=dict(offset=999), p7008=dict(offset=900)))
    assert failovers(plan_master_failover(state, node(state, 7001), "default", 1024))[0][0] == address(7007)


def test_on_equal_lag_the_promotion_that_crowds_no_zone_wins_over_the_smaller_address():
    state = state_of(three_replicas())
    # 7004 and 7007 would put a second master in zone b (with 7002); 7008 is alone in zone d.
    decision = plan_master_failover(state, node(state, 7001), "default", 1024)
    assert failovers(decision)[0][0] == address(7008)
    assert decision.placement["before"]["masters_over_domain_cap"] \
        == decision.placement["after"]["masters_over_domain_cap"]


def test_replicas_that_are_not_synced_are_passed_over_and_none_synced_is_refused():
    state = state_of(three_replicas(p7008=dict(link="down"), p7004=dict(flag="fail")))
    assert failovers(plan_master_failover(state, node(state, 7001), "default", 1024))[0][0] == address(7007)
    state = state_of(three_replicas(p7004=dict(link="down"), p7007=dict(link="down"), p7008=dict(link="down")))
    with pytest.raises(PlanError, match="no replica of 127.0.0.1:7001 .* can take over in a default failover"):
        plan_master_failover(state, node(state, 7001), "default", 1024)


def test_a_master_whose_failover_happened_needs_nothing_and_one_without_replicas_is_refused():
    specs = six(p7001=dict(master=7004, slots=""), p7004=dict(master=0, slots=SLOTS[0]))
    state = state_of(specs)
    assert plan_master_failover(state, node(state, 7001), "default", 1024).plan.steps == ()
    # A dead master whose replica took over keeps no slot in the others' views.
    state = state_of(six(p7001=dict(slots="", down=True, flag="fail"), p7004=dict(master=0, slots=SLOTS[0])))
    assert plan_master_failover(state, node(state, 7001), "force", 1024).plan.steps == ()
    state = state_of([Spec(7001, slots="0-16383")])
    with pytest.raises(PlanError, match="has no replica to promote"):
        plan_master_failover(state, node(state, 7001), "default", 1024)


def test_force_on_a_dead_master_promotes_its_most_advanced_replica():
    state = state_of(three_replicas(p7001=dict(down=True), p7004=dict(link="down", offset=700),
                                    p7007=dict(link="down", offset=800), p7008=dict(link="down", offset=750)))
    decision = plan_master_failover(state, node(state, 7001), "force", 1024)
    assert failovers(decision) == [(address(7007), ("FORCE", ""))] and decision.failovers[0]["lag"] == 0
    with pytest.raises(PlanError, match="cannot be reached .* use mode force"):
        plan_master_failover(state, node(state, 7001), "default", 1024)


# --- placement restore ------------------------------------------------------------------------------------------

def after_failover_of_7001() -> list:
    """six() once 7004 (zone b) took over from 7001 (zone a): zone b holds two masters."""
    return six(p7001=dict(master=7004, slots=""), p7004=dict(master=0, slots=SLOTS[0]))


def test_restore_fails_over_back_where_a_zone_holds_two_masters_and_a_second_run_plans_nothing():
    state = state_of(after_failover_of_7001())
    decision = plan_restore(state, 1024)
    assert failovers(decision) == [(address(7001), ("", address(7004)))]
    assert decision.plan.steps[-1].action == WAIT_CONVERGED
    assert decision.placement["after"]["masters_over_domain_cap"] < decision.placement["before"]["masters_over_domain_cap"]
    assert plan_restore(state_of(six()), 1024).plan.steps == ()


def test_restore_leaves_out_replicas_that_are_not_synced_and_refuses_a_failed_cluster():
    state = state_of(six(p7001=dict(master=7004, slots="", link="down"), p7004=dict(master=0, slots=SLOTS[0])))
    assert plan_restore(state, 1024).plan.steps == ()
    with pytest.raises(PlanError, match="placement restore plans default failovers only"):
        plan_restore(state_of(after_failover_of_7001(), cluster_state="fail"), 1024)


# --- the pure choices: properties --------------------------------------------------------------------------------

ZONES = ("a", "b", "c", "")


@st.composite
def shards_and_eligible(draw):
    """2-5 shards of 0-3 replicas each, zones and hosts from small sets; some replicas eligible."""
    count = draw(st.integers(2, 5))
    shards, eligible, port = [], set(), 7000
    for _index in range(count):
        members = []
        for _member in range(1 + draw(st.integers(0, 3))):
            port += 1
            members.append(Candidate("10.0.0.1:%d" % port, draw(st.sampled_from(("h1", "h2", "h3", "h4", "h5"))),
                                     "", draw(st.sampled_from(ZONES))))
        shards.append(Shard(members[0], tuple(members[1:])))
        eligible.update(replica.key for replica in members[1:] if draw(st.booleans()))
    return tuple(shards), eligible


def applied(shards: tuple, choices: tuple) -> tuple:
    for index, key in choices:
        shards = with_promoted(shards, index, key)
    return shards


@settings(max_examples=300, deadline=None)
@given(shards_and_eligible(), st.randoms(use_true_random=False))
def test_restore_lowers_the_cost_converges_and_ignores_order(drawn, rand):
    shards, eligible = drawn
    choices = restore_choices(shards, eligible)
    assert len({index for index, _key in choices}) == len(choices)
    assert all(key in eligible for _index, key in choices)
    after = applied(shards, choices)
    if choices:
        assert placement_cost(after) < placement_cost(shards)
    # The next run: the demoted masters are synced replicas by then; no single change lowers the cost any more.
    demoted = {shards[index].master.key for index, _key in choices}
    assert restore_choices(after, eligible | demoted) == ()
    # The same shards in another order make the same choices.
    order = list(range(len(shards)))
    rand.shuffle(order)
    shuffled = tuple(shards[index] for index in order)
    again = restore_choices(shuffled, eligible)
    assert sorted((shuffled[index].master.key, key) for index, key in again) \
        == sorted((shards[index].master.key, key) for index, key in choices)


@settings(max_examples=300, deadline=None)
@given(shards_and_eligible(), st.data())
def test_the_best_replica_has_the_least_lag_then_the_best_placement(drawn, data):
    shards, _eligible = drawn
    index = data.draw(st.sampled_from([i for i, shard in enumerate(shards) if shard.replicas] or [None]))
    if index is None:
        return
    options = [(replica.key, data.draw(st.integers(0, 3))) for replica in shards[index].replicas]
    chosen = best_replica(shards, index, options)
    lags = dict(options)
    assert lags[chosen] == min(lags.values())
    cost = placement_cost(with_promoted(shards, index, chosen))
    assert all(cost <= placement_cost(with_promoted(shards, index, key)) for key, lag in options if lag == lags[chosen])
    assert best_replica(shards, index, list(reversed(options))) == chosen


def test_the_layout_holds_the_masters_that_serve_slots_with_their_replicas_and_labels():
    shards = layout(state_of(six() + [Spec(7007)]))
    assert [shard.master.key for shard in shards] == [address(7001), address(7002), address(7003)]
    assert [(replica.key, replica.zone) for replica in shards[0].replicas] == [(address(7004), "b")]
    # Every node on one address shares its host: three pairs share a host and the host holds every master.
    assert placement_cost(shards) == (3, 2)
