# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Anti-affinity placement: exactness against a brute force, plan shape, determinism, goals and reports."""

from __future__ import annotations

import ast
import itertools
import random
from collections import Counter
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils import (
    _placement, _placement_flow, _placement_masters, _placement_pairing, _placement_problem, _placement_report,
)
from ansible_collections.redisops.cluster.plugins.module_utils._placement import (
    LEVELS, Candidate, PlacementError, address_host, place, shared_domains,
)

WEIGHT = {"host": 100, "rack": 10, "zone": 1}  # lexicographic for up to 9 pairs


def node(index: int, host: str = "", rack: str = "", zone: str = "", port: int = 6379) -> Candidate:
    return Candidate("10.0.0.%d:%d" % (index, port), host, rack, zone)


def sharing(placement, candidates) -> tuple:
    """(pairs sharing a host, a rack, a zone): the lexicographic goal-1 cost."""
    by_key = {c.key: c for c in candidates}
    counts = Counter(level for replica, master in placement.replicas
                     for level in shared_domains(by_key[replica], by_key[master]))
    return tuple(counts[level] for level in LEVELS)


def assert_valid(placement, candidates, replicas: int) -> None:
    keys = {c.key for c in candidates}
    total, masters = len(candidates), len(candidates) // (replicas + 1)
    assert len(placement.masters) == masters == len(set(placement.masters))
    assert set(placement.masters) <= keys
    paired = [replica for replica, _master in placement.replicas]
    assert sorted(paired) == sorted(keys - set(placement.masters)), "every non-master is a replica exactly once"
    assert all(master in placement.masters for _replica, master in placement.replicas)
    counts = [len(placement.replicas_of(master)) for master in placement.masters]
    assert max(counts) - min(counts) <= 1
    if total >= masters * (replicas + 1):
        assert min(counts) >= replicas
    assert placement.replicas == tuple(sorted(placement.replicas))
    by_key = {c.key: c for c in candidates}
    assert placement.shared == tuple((r, m, shared_domains(by_key[r], by_key[m])) for r, m in placement.replicas
                                     if shared_domains(by_key[r], by_key[m]))


# --- the brute force: every role choice, every assignment ------------------------------------------------

def optimum(candidates, replicas: int, fixed=()) -> tuple:
    """The lexicographic optimum of goal 1 over all plans with even replica counts (tiny inputs only)."""
    count = len(candidates)
    masters = count // (replicas + 1)
    per_master, extras = divmod(count - masters, masters)
    cost = [[sum(WEIGHT[level] for level in shared_domains(a, b)) for b in candidates] for a in candidates]
    labels = [(c.host or address_host(c.key), c.rack, c.zone) for c in candidates]
    best, seen = None, set()
    required = {i for i, c in enumerate(candidates) if c.key in fixed}
    for chosen in itertools.combinations(range(count), masters):
        if not required <= set(chosen):
            continue
        signature = tuple(sorted((labels[i], i in required) for i in chosen))
        if signature in seen:  # nodes with equal labels are interchangeable
            continue
        seen.add(signature)
        others = [i for i in range(count) if i not in chosen]
        for big in itertools.combinations(range(masters), extras):
            slots = [chosen[j] for j in range(masters) for _unused in range(per_master + (j in big))]
            value = assignment(others, slots, cost)
            best = value if best is None else min(best, value)
    return (best // 100, best // 10 % 10, best % 10)


def assignment(rows, columns, cost) -> int:
    """Minimum cost perfect matching, by dynamic programming over the set of used columns."""
    states = {0: 0}
    for row in rows:
        following = {}
        for used, value in states.items():
            for j, column in enumerate(columns):
                if used >> j & 1 or (j and columns[j - 1] == column and not used >> (j - 1) & 1):
                    continue  # equal columns are taken in order
                key, total = used | 1 << j, value + cost[row][column]
                if total < following.get(key, total + 1):
                    following[key] = total
        states = following
    return states[(1 << len(columns)) - 1] if rows else 0


@st.composite
def small_layouts(draw):
    """Up to 9 nodes, labels from 1-3 hosts, racks and zones in any combination (unknown allowed)."""
    replicas = draw(st.integers(0, 2))
    count = draw(st.integers(replicas + 1, 9))
    hosts, racks, zones = (draw(st.integers(1, 3)) for _unused in range(3))
    candidates = []
    for index in range(count):
        host = draw(st.sampled_from(["h%d" % k for k in range(hosts)] + [""]))  # '' = its own address
        rack = draw(st.sampled_from(["r%d" % k for k in range(racks)] + [""]))
        zone = draw(st.sampled_from(["z%d" % k for k in range(zones)] + [""]))
        candidates.append(node(index, host, rack, zone))
    return candidates, replicas


@st.composite
def nested_layouts(draw, most: int = 9):
    """Labels that nest: hosts in racks in zones (some unlabelled), up to `most` nodes."""
    replicas = draw(st.integers(0, 2))
    candidates = []
    for zone in range(draw(st.integers(0, 3))) or [None]:
        for rack in range(draw(st.integers(1, 2))):
            for host in range(draw(st.integers(1, 3))):
                for _unused in range(draw(st.integers(1, 3))):
                    zone_name = "" if zone is None else "z%d" % zone
                    rack_name = draw(st.sampled_from(["", "%sr%d" % (zone_name, rack)]))
                    candidates.append(Candidate("", "", rack_name, zone_name))
    # Hosts are named after their zone and rack, so a host never spans two racks.
    named = [Candidate("10.1.0.%d:6379" % index, "%s%s-h%d" % (c.zone, c.rack, draw(st.integers(0, 1))), c.rack, c.zone)
             for index, c in enumerate(candidates[:most])]
    return named, min(replicas, len(named) - 1)


@settings(max_examples=150, deadline=None)
@given(small_layouts(), st.data())
def test_goal1_is_the_brute_force_optimum(layout, data):
    candidates, replicas = layout
    masters = len(candidates) // (replicas + 1)
    fixed = data.draw(st.sets(st.sampled_from([c.key for c in candidates]), max_size=min(2, masters)), label="fixed")
    placement = place(candidates, replicas, fixed_masters=fixed)
    assert_valid(placement, candidates, replicas)
    assert fixed <= set(placement.masters)
    assert sharing(placement, candidates) == optimum(candidates, replicas, fixed)


@settings(max_examples=100, deadline=None)
@given(nested_layouts(), st.data())
def test_nested_labels_reach_the_optimum_without_the_exhaustive_search(layout, data):
    candidates, replicas = layout
    masters = len(candidates) // (replicas + 1)
    fixed = data.draw(st.sets(st.sampled_from([c.key for c in candidates]), max_size=min(2, masters)), label="fixed")
    with mock.patch.object(_placement_masters, "EXHAUSTIVE_LIMIT", 0):
        problem = _placement._problem(tuple(candidates), replicas, fixed, {})
        assert problem.nested
        counts, exact = _placement_masters.master_counts(problem)
        assert exact
        roles = _placement_problem.assign_roles(problem, counts)
        pairs = _placement_pairing.tree_pairs(problem, roles)  # raises _Stuck if no tight pair is found
        placement = _placement._placement(problem, roles, pairs, exact)
    assert_valid(placement, candidates, replicas)
    assert fixed <= set(placement.masters)
    assert sharing(placement, candidates) == optimum(candidates, replicas, fixed)


def domain_bound(placement, candidates) -> tuple:
    """Per level, the pairs a domain keeps inside by counting alone: sum of (S + D - T)+."""
    by_key = {c.key: c for c in candidates}
    total_pairs = len(placement.replicas)
    inside = Counter()
    for replica, _master in placement.replicas:
        for domain in by_key[replica].domains():
            inside[domain] += 1
    for master in placement.masters:
        for domain in by_key[master].domains():
            inside[domain] += len(placement.replicas_of(master))
    return tuple(sum(max(0, count - total_pairs) for domain, count in inside.items() if domain[0] == level)
                 for level in LEVELS)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(1, 3))
def test_nested_pairing_reaches_the_counting_bound_on_larger_inputs(seed, replicas):
    rng = random.Random(seed)
    candidates = []
    for zone in range(rng.randint(1, 4)):
        for rack in range(rng.randint(1, 4)):
            for host in range(rng.randint(1, 5)):
                for port in range(rng.randint(1, 4)):
                    candidates.append(Candidate("10.%d.%d.%d:%d" % (zone, rack, host, 6379 + port), "",
                                                "z%dr%d" % (zone, rack) if rng.random() < 0.8 else "",
                                                "z%d" % zone if rng.random() < 0.9 else ""))
    # Nesting: a host keeps the rack and zone of its first node.
    first = {}
    candidates = [Candidate(c.key, "", *first.setdefault(address_host(c.key), (c.rack, c.zone))) for c in candidates]
    if len(candidates) < replicas + 1:
        return
    placement = place(candidates, replicas)
    assert_valid(placement, candidates, replicas)
    assert sharing(placement, candidates) == domain_bound(placement, candidates)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(0, 3), st.integers(2, 60))
def test_plan_shape_with_any_labels_and_fixed_masters(seed, replicas, count):
    rng = random.Random(seed)
    if count < replicas + 1:
        return
    candidates = [node(i, rng.choice(["", "h1", "h2", "h3", "h%d" % i]), rng.choice(["", "r1", "r2"]),
                       rng.choice(["", "z1", "z2", "z3"])) for i in range(count)]
    masters = count // (replicas + 1)
    fixed = rng.sample([c.key for c in candidates], rng.randint(0, min(2, masters)))
    placement = place(candidates, replicas, fixed_masters=fixed)
    assert_valid(placement, candidates, replicas)
    assert set(fixed) <= set(placement.masters)


@settings(max_examples=40, deadline=None)
@given(small_layouts(), st.randoms(use_true_random=False))
def test_same_input_in_any_order_gives_the_same_plan(layout, rng):
    candidates, replicas = layout
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    assert place(shuffled, replicas) == place(candidates, replicas)


def test_same_plan_in_any_order_for_a_large_input():
    candidates = [Candidate("10.%d.%d.%d:%d" % (h % 3, h % 7, h, 7000 + p), "", "r%d" % (h % 7 % 3), "z%d" % (h % 3))
                  for h in range(40) for p in range(3)]
    shuffled = list(candidates)
    random.Random(7).shuffle(shuffled)
    assert place(shuffled, 2) == place(candidates, 2)


# --- the classic cases --------------------------------------------------------------------------------

def test_six_nodes_on_three_hosts_with_one_replica():
    candidates = [node(i, "host%d" % (i % 3)) for i in range(6)]
    placement = place(candidates, 1)
    assert_valid(placement, candidates, 1)
    assert placement.unmet == () and placement.shared == ()
    assert sorted(c.host for c in candidates if c.key in placement.masters) == ["host0", "host1", "host2"]


def test_six_nodes_on_three_hosts_by_address():
    # No labels: the host is the address, so two ports on one IP share a host.
    candidates = [Candidate("192.168.1.%d:%d" % (i % 3, 7000 + i), "") for i in range(6)]
    placement = place(candidates, 1)
    assert placement.unmet == () and placement.shared == ()


def zones(count: int, per_zone_hosts: int = 0) -> list:
    return [node(i, "h%d" % (i // 2) if per_zone_hosts else "", "", "z%d" % (i % 3)) for i in range(count)]


def test_twelve_nodes_over_three_zones_with_one_replica():
    candidates = zones(12)
    placement = place(candidates, 1)
    assert_valid(placement, candidates, 1)
    assert placement.unmet == () and placement.shared == ()
    zone_of = {c.key: c.zone for c in candidates}
    assert Counter(zone_of[m] for m in placement.masters) == {"z0": 2, "z1": 2, "z2": 2}
    # Slot order interleaves the zones: contiguous slot ranges are spread too.
    assert len({zone_of[m] for m in placement.masters[:3]}) == 3
    assert len({zone_of[m] for m in placement.masters[3:]}) == 3


def test_nine_nodes_over_three_zones_with_two_replicas():
    candidates = zones(9)
    placement = place(candidates, 2)
    assert_valid(placement, candidates, 2)
    assert placement.unmet == () and placement.shared == ()
    zone_of = {c.key: c.zone for c in candidates}
    for master in placement.masters:
        # Each master's two replicas sit in the two other zones.
        assert sorted(zone_of[r] for r in placement.replicas_of(master) + (master,)) == ["z0", "z1", "z2"]


def test_twelve_nodes_over_three_zones_with_two_replicas():
    candidates = zones(12)
    placement = place(candidates, 2)
    assert_valid(placement, candidates, 2)
    assert placement.shared == ()
    # Four masters over three zones: one zone holds two, and losing it leaves 2 of the 3 votes needed.
    (message,) = placement.unmet
    assert message.startswith("goal 3: zone z") and "holds 2 of 4 masters" in message and "3 votes" in message


def test_all_nodes_on_one_host_still_make_a_plan():
    candidates = [node(i, "box") for i in range(6)]
    placement = place(candidates, 1)
    assert_valid(placement, candidates, 1)
    assert sharing(placement, candidates) == (3, 0, 0)
    goal1, goal3 = placement.unmet
    assert goal1.startswith("goal 1: 3 replicas share host box with their master: host box holds 6 of 6 nodes")
    assert goal3.startswith("goal 3: host box holds 3 of 3 masters") and "no node lies outside it" in goal3


def test_a_crowded_zone_is_named_with_the_reason():
    candidates = [node(i, "", "", "z1") for i in range(8)] + [node(8 + i, "", "", "z%d" % (2 + i % 2)) for i in range(4)]
    placement = place(candidates, 1)
    assert_valid(placement, candidates, 1)
    assert sharing(placement, candidates) == optimum(candidates, 1) == (0, 0, 2)
    goal1 = placement.unmet[0]
    assert goal1.startswith("goal 1: 2 replicas share zone z1 with their master: zone z1 holds 8 of 12 nodes, "
                            "more than the other zones can pair with")
    assert "need 8 partners outside it, the rest offer 4" in goal1


def test_hosts_are_separated_before_racks_and_racks_before_zones():
    # Two zones of 4; rack r1 spans both zones' first halves. Avoiding zone sharing entirely is
    # impossible here only if it would cost a host: check that the plan never trades a host for a zone.
    candidates = [node(0, "a", "r1", "z1"), node(1, "a", "r1", "z1"), node(2, "b", "r2", "z1"), node(3, "c", "r2", "z1"),
                  node(4, "d", "r1", "z2"), node(5, "e", "r3", "z2")]
    placement = place(candidates, 1)
    assert sharing(placement, candidates) == optimum(candidates, 1)
    assert sharing(placement, candidates)[0] == 0


def test_fixed_masters_are_kept():
    candidates = [node(i, "host%d" % (i % 3)) for i in range(6)]
    fixed = ("10.0.0.0:6379", "10.0.0.3:6379")  # both on host0
    placement = place(candidates, 1, fixed_masters=fixed)
    assert_valid(placement, candidates, 1)
    assert set(fixed) <= set(placement.masters)
    assert placement.shared == ()
    (goal3,) = placement.unmet
    assert "host host0 holds 2 of 3 masters" in goal3 and "2 of them are fixed masters" in goal3


def test_fixed_replica_links_are_kept_when_the_roles_allow():
    candidates = [node(i, "host%d" % (i % 3)) for i in range(6)]
    links = {"10.0.0.4:6379": "10.0.0.0:6379", "10.0.0.5:6379": "10.0.0.1:6379"}
    placement = place(candidates, 1, fixed_masters=("10.0.0.0:6379", "10.0.0.1:6379"), fixed_replicas=links)
    assert_valid(placement, candidates, 1)
    for replica, master in links.items():
        assert placement.master_of(replica) == master


def test_a_fixed_link_to_a_node_that_does_not_stay_master_is_dropped():
    candidates = [node(i, "host%d" % i) for i in range(4)]
    # 0 and 1 are fixed masters; 3 replicates from 2, but only two masters fit: 2 becomes a replica.
    placement = place(candidates, 1, fixed_masters=("10.0.0.0:6379", "10.0.0.1:6379"),
                      fixed_replicas={"10.0.0.3:6379": "10.0.0.2:6379"})
    assert_valid(placement, candidates, 1)
    assert "10.0.0.2:6379" not in placement.masters


def test_a_link_beyond_an_even_share_is_dropped():
    candidates = [node(i, "host%d" % i) for i in range(6)]
    links = {"10.0.0.%d:6379" % i: "10.0.0.0:6379" for i in (3, 4, 5)}
    placement = place(candidates, 1, fixed_masters=("10.0.0.0:6379",), fixed_replicas=links)
    assert_valid(placement, candidates, 1)
    assert len(placement.replicas_of("10.0.0.0:6379")) == 1


def test_rack_names_repeated_in_every_zone_are_one_rack():
    # Labels compared as they are: rack1 of z0 and rack1 of z1 are one rack, so the labels do not nest.
    # 3 zones x 4 racks x 6 hosts x 2 ports = 144 groups: the flow runs over merged (zone, rack) groups.
    candidates = [Candidate("10.%d.%d.%d:%d" % (z, r, h, 7000 + p), "", "rack%d" % r, "z%d" % z)
                  for z in range(3) for r in range(4) for h in range(6) for p in range(2)]
    for replicas in (1, 2):
        placement = place(candidates, replicas)
        assert_valid(placement, candidates, replicas)
        assert placement.shared == () and placement.unmet == ()


def test_hosts_spanning_zones_still_get_a_plan():
    # Every host spans zones and racks cross zones: far too many groups for a flow, so the pairing runs
    # on the tree of hosts in racks and swaps repair the zones.
    candidates = [Candidate("10.4.0.%d:%d" % (i // 4, 7000 + i), "host-%d" % (i // 4), "rack-%d" % (i // 40),
                            "zone-%s" % "abc"[i % 3]) for i in range(400)]
    placement = place(candidates, 1)
    assert_valid(placement, candidates, 1)
    assert placement.shared == ()
    placement = place(candidates, 2)
    assert_valid(placement, candidates, 2)
    assert sharing(placement, candidates)[:2] == (0, 0)  # no host, no rack; a few zones at most
    assert all("not a proven optimum" in message for message in placement.unmet if message.startswith("goal 1"))


# --- goal 3 -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count, replicas", [(12, 1), (18, 1), (18, 2), (30, 1), (27, 2), (36, 3)])
def test_no_zone_holds_a_majority_of_masters_in_a_balanced_layout(count, replicas):
    # Zones z0-z2, two racks each, hosts of up to 2 nodes: nested and balanced.
    candidates = [node(i, "z%dr%dh%d" % (i % 3, i // 3 % 2, i // 12), "z%dr%d" % (i % 3, i // 3 % 2), "z%d" % (i % 3))
                  for i in range(count)]
    placement = place(candidates, replicas)
    assert_valid(placement, candidates, replicas)
    zone_of = {c.key: c.zone for c in candidates}
    held = Counter(zone_of[m] for m in placement.masters)
    assert max(held.values()) * 2 < len(placement.masters)  # losing a zone leaves a majority to vote
    assert max(held.values()) - min(held.values()) <= 1
    assert placement.shared == ()
    if replicas < 3:
        assert placement.unmet == ()
    else:  # three replicas and two other zones: two of them share a zone, but never a rack or a host
        (goal2,) = placement.unmet
        assert goal2.startswith("goal 2: 9 masters have replicas that share a zone") and "a rack" not in goal2
        assert "only 2 zones besides its own" in goal2


def test_two_zones_cannot_survive_the_loss_of_either():
    candidates = [node(i, "", "", "z%d" % (i % 2)) for i in range(8)]
    placement = place(candidates, 1)
    assert placement.shared == ()
    (goal3,) = placement.unmet
    assert goal3.startswith("goal 3: zone z") and "holds 2 of 4 masters: losing it leaves 2, short of the 3 votes" in goal3


def test_goal3_needs_three_masters():
    placement = place([node(i, "h%d" % i) for i in range(4)], 1)
    assert placement.unmet == ("goal 3: with 2 masters, losing any one leaves fewer than the 2 votes a failover "
                               "needs (it takes 3 masters or more)",)


# --- goal 2 -------------------------------------------------------------------------------------------------

def test_replicas_of_one_master_are_spread_over_racks():
    # 3 zones x 2 racks x 2 hosts x 2 nodes = 24 nodes, 2 replicas: 8 masters, every one with replicas apart.
    candidates = [Candidate("10.%d.%d.%d:%d" % (z, r, h, 6379 + p), "", "z%dr%d" % (z, r), "z%d" % z)
                  for z in range(3) for r in range(2) for h in range(2) for p in range(2)]
    placement = place(candidates, 2)
    assert_valid(placement, candidates, 2)
    assert placement.shared == ()
    zone_of = {c.key: c.zone for c in candidates}
    for master in placement.masters:
        assert len({zone_of[r] for r in placement.replicas_of(master)}) == 2
    assert not any(message.startswith("goal 2") for message in placement.unmet)


def test_goal2_names_the_crowded_zone():
    # Zone z0 holds half the nodes: its replicas outnumber the masters outside it.
    candidates = [node(i, "", "", "z0") for i in range(6)] + [node(6 + i, "", "", "z%d" % (1 + i % 2)) for i in range(6)]
    placement = place(candidates, 2)
    assert_valid(placement, candidates, 2)
    goal2 = [message for message in placement.unmet if message.startswith("goal 2")]
    assert goal2 and "share a zone" in goal2[0] and "zone z0 holds" in goal2[0]


# --- inputs, labels, errors ------------------------------------------------------------------------------

def test_shared_domains_ignores_unknown_labels():
    a, b = node(1, "h", "", "z"), node(2, "h", "", "z")
    assert shared_domains(a, b) == ("host", "zone")
    assert shared_domains(node(1, "", "r", ""), node(2, "", "r", "")) == ("rack",)
    assert shared_domains(node(1), node(2)) == ()
    assert shared_domains(Candidate("10.0.0.1:7000", ""), Candidate("10.0.0.1:7001", "")) == ("host",)
    assert shared_domains(Candidate("[fe80::1]:7000", ""), Candidate("fe80::1:7001", "")) == ("host",)


def test_replicas_zero_makes_every_node_a_master():
    candidates = [node(i, "h%d" % (i % 2), "", "z%d" % (i % 3)) for i in range(6)]
    placement = place(candidates, 0)
    assert sorted(placement.masters) == sorted(c.key for c in candidates) and placement.replicas == ()


def test_extra_nodes_become_extra_replicas_one_per_master():
    candidates = [node(i, "h%d" % i, "", "z%d" % (i % 3)) for i in range(11)]  # 3 masters, 8 replicas
    placement = place(candidates, 2)
    assert_valid(placement, candidates, 2)
    assert sorted(len(placement.replicas_of(m)) for m in placement.masters) == [2, 3, 3]


@pytest.mark.parametrize("call, message", [
    (lambda: place([], 1), "no candidate nodes"),
    (lambda: place([node(1), node(1)], 0), "more than once"),
    (lambda: place([node(1), node(2)], -1), "replicas must be"),
    (lambda: place([node(1), node(2)], 2), "cannot make one master"),
    (lambda: place([node(1), node(2)], 1, fixed_masters=("10.9.9.9:1",)), "not among the candidates"),
    (lambda: place([node(1), node(2)], 1, fixed_masters=("10.0.0.1:6379", "10.0.0.2:6379")), "2 fixed masters"),
    (lambda: place([node(1), node(2)], 1, fixed_replicas={"10.0.0.1:6379": "10.0.0.1:6379"}), "of itself"),
    (lambda: place([node(1), node(2)], 1, fixed_masters=("10.0.0.1:6379",),
                   fixed_replicas={"10.0.0.1:6379": "10.0.0.2:6379"}), "both a fixed master and a fixed replica"),
    (lambda: place(["10.0.0.1:6379"], 0), "must be a Candidate"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(PlacementError, match=message):
        call()


@pytest.mark.parametrize("module", [
    _placement, _placement_problem, _placement_masters, _placement_flow, _placement_pairing, _placement_report,
])
def test_module_parses_as_python_3_8(module):
    with open(module.__file__) as handle:
        ast.parse(handle.read(), feature_version=(3, 8))
