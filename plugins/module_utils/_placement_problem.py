# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The placement problem: candidate groups, the domain tree, roles and costs of sharing. Private to redisops.cluster.

Pure code for _placement: candidates with equal (host, rack, zone) form a group; the tree zone > rack > group
holds them (its nodes are the domains when labels nest); allocate() spreads units over the tree at least cost;
the roles say which nodes of each group are masters and which fixed links stay.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import typing
from collections import Counter
from operator import itemgetter

if typing.TYPE_CHECKING:
    from ._placement import Candidate


LEVELS = ("host", "rack", "zone")  # most important first


@dataclasses.dataclass(frozen=True)
class DomainTree:
    """Root > zones > racks > one leaf per group (node 0 is the root). With nesting labels, its nodes are the domains."""

    level: tuple  # per node: 'zone', 'rack', 'host', or '' for the root
    parent: tuple  # per node: its parent, -1 for the root; parents come before their children
    children: tuple
    path: tuple  # per node: itself, its parent, ... the root
    group: tuple  # per node: the group of a leaf, -1 for the others
    leaf: tuple  # per group: its leaf
    groups: tuple  # per node: the groups below it
    size: tuple  # per node: the candidates below it
    closed: tuple  # per node: its hosts (and, for a zone, its racks) appear nowhere else


@dataclasses.dataclass(frozen=True)
class Problem:
    """The checked input, grouped by labels, with the counts and weights every part of the placement uses."""

    nodes: tuple  # Candidates with the host filled in, sorted by key
    by_key: dict
    domains: dict  # key -> frozenset of its (level, value) domains
    masters: int  # M
    per_master: int  # q: replicas every master takes
    extras: int  # E: masters that take q + 1
    fixed: frozenset  # keys that stay masters
    links: tuple  # (replica, master) links to keep where the roles allow, sorted
    groups: tuple  # tuples of candidates with equal (host, rack, zone), ordered by (zone, rack, host)
    domain_groups: dict  # (level, value) -> indexes of the groups in that domain
    domain_size: dict  # (level, value) -> candidates in that domain
    group_roles: tuple  # per group: (nodes free to be masters, nodes that should be masters) for fixed_replicas
    weights: dict  # level -> cost of one pair sharing it: one host outweighs every rack, one rack every zone ('' = 0)
    nested: bool  # every host lies in one rack and one zone, every rack in one zone
    tree: DomainTree

    @property
    def pairs(self) -> int:
        return len(self.nodes) - self.masters


def build_problem(nodes: tuple, by_key: dict, masters: int, fixed: frozenset, links: tuple) -> Problem:
    """The problem for checked input: nodes sorted by key, M masters, the fixed masters and the links to keep."""
    groups = _group_nodes(nodes)
    domain_groups, domain_size = {}, Counter()
    for index, members in enumerate(groups):
        for domain in members[0].domains():
            domain_groups.setdefault(domain, []).append(index)
            domain_size[domain] += len(members)
    per_master, extras = divmod(len(nodes) - masters, masters)
    base = len(nodes) + 2  # more than the number of pairs: weights stay lexicographic
    return Problem(
        nodes=nodes, by_key=by_key, domains={node.key: frozenset(node.domains()) for node in nodes},
        masters=masters, per_master=per_master, extras=extras, fixed=fixed,
        links=links, groups=groups, domain_groups={domain: tuple(g) for domain, g in domain_groups.items()},
        domain_size=dict(domain_size), group_roles=_group_roles(groups, fixed, links),
        weights={"host": base * base, "rack": base, "zone": 1, "": 0}, nested=_nested(groups), tree=_tree(groups),
    )


def _group_nodes(nodes) -> tuple:
    by_label = {}
    for node in nodes:
        by_label.setdefault((node.zone, node.rack, node.host), []).append(node)
    return tuple(tuple(by_label[label]) for label in sorted(by_label))


def _group_roles(groups, fixed, links) -> tuple:
    # Breaking a replication that already runs, or demoting a node others replicate from, is churn.
    replicating = {replica for replica, _master in links}
    wanted = fixed | {master for _replica, master in links}
    return tuple((sum(1 for node in members if node.key not in replicating),
                  sum(1 for node in members if node.key in wanted and node.key not in replicating))
                 for members in groups)


def _nested(groups) -> bool:
    host_place, rack_zone = {}, {}
    for members in groups:
        node = members[0]
        if host_place.setdefault(node.host, (node.rack, node.zone)) != (node.rack, node.zone):
            return False
        if node.rack and rack_zone.setdefault(node.rack, node.zone) != node.zone:
            return False
    return True


def _tree(groups, rack: bool = True, zone: bool = True) -> DomainTree:
    """The tree over the groups; without rack (or zone), that level is left out. A host holding several
    groups (only when a level is left out) becomes a node above one leaf per group, leaves weighing nothing."""
    level, parent, index, leaf = [""], [-1], {}, []

    def node(key: tuple, up: int, kind: str) -> int:
        if key not in index:
            index[key] = len(level)
            level.append(kind)
            parent.append(up)
        return index[key]

    def host_key(first) -> tuple:
        return (first.zone if zone else "", first.rack if rack else "", first.host)

    shared = Counter(host_key(members[0]) for members in groups)
    for group, members in enumerate(groups):
        first = members[0]
        place_zone, place_rack = host_key(first)[:2]
        up = node(("zone", place_zone), 0, "zone") if place_zone else 0
        up = node(("rack", place_zone, place_rack), up, "rack") if place_rack else up
        up = node(("host",) + host_key(first), up, "host")
        leaf.append(node(("group", group), up, "") if shared[host_key(first)] > 1 else up)
    count = len(level)
    children = [[] for _unused in range(count)]
    below = [[] for _unused in range(count)]
    paths = []
    for item in range(count):
        if item:
            children[parent[item]].append(item)
        path, up = [], item
        while up >= 0:
            path.append(up)
            up = parent[up]
        paths.append(tuple(path))
    for group, item in enumerate(leaf):
        for up in paths[item]:
            below[up].append(group)
    group_of = [-1] * count
    for group, item in enumerate(leaf):
        group_of[item] = group
    return DomainTree(
        level=tuple(level), parent=tuple(parent), children=tuple(map(tuple, children)),
        path=tuple(paths), group=tuple(group_of), leaf=tuple(leaf), groups=tuple(map(tuple, below)),
        size=tuple(sum(len(groups[g]) for g in found) for found in below),
        closed=_closed(groups, level, below),
    )


def _closed(groups, level, below) -> tuple:
    # A merged rack or zone must look the same from every other group: none of its hosts (nor, for a
    # zone, its racks) may appear outside it.
    where = {}
    for group, members in enumerate(groups):
        first = members[0]
        where.setdefault(("host", first.host), set()).add(group)
        if first.rack:
            where.setdefault(("rack", first.rack), set()).add(group)
    closed = []
    for kind, found in zip(level, below):
        inside = set(found)
        labels = {("host", groups[g][0].host) for g in found}
        if kind == "zone":
            labels |= {("rack", groups[g][0].rack) for g in found if groups[g][0].rack}
        closed.append(all(where[label] <= inside for label in labels))
    return tuple(closed)


def nesting_tree(groups) -> DomainTree:
    """The tree of hosts, racks if every host lies in one rack, zones if every host (and rack kept) lies in one zone."""
    racks, zones, rack_zones = {}, {}, {}
    for members in groups:
        first = members[0]
        racks.setdefault(first.host, set()).add(first.rack)
        zones.setdefault(first.host, set()).add(first.zone)
        if first.rack:
            rack_zones.setdefault(first.rack, set()).add(first.zone)
    rack = all(len(found) == 1 for found in racks.values())
    zone = all(len(found) == 1 for found in zones.values()) and not (rack and any(len(z) > 1 for z in rack_zones.values()))
    return _tree(groups, rack, zone)


def node_sums(tree: DomainTree, per_group) -> list:
    """Per tree node, the sum of per_group over the groups below it."""
    return [sum(per_group[g] for g in groups) for groups in tree.groups]


def allocate(tree: DomainTree, count: int, lo, hi, node_cost, group_cost) -> tuple:
    """count units over the groups, lo <= units <= hi, minimising convex costs per tree node and group.

    Bottom-up, every node merges its children's sorted marginal costs and adds its own: the greedy
    for separable convex costs over a laminar family, exact.
    """
    need = count - sum(lo)
    if need <= 0:
        return tuple(lo)
    base = [0] * len(tree.level)
    marginal = [[] for _unused in tree.level]
    for node in range(len(tree.level) - 1, -1, -1):  # children have higher numbers than their parent
        group = tree.group[node]
        if group >= 0:
            low = base[node] = lo[group]
            units = [(group_cost(group, k + 1) - group_cost(group, k), group)
                     for k in range(low, min(hi[group], low + need))]
        else:
            base[node] = sum(base[child] for child in tree.children[node])
            units = list(itertools.islice(heapq.merge(*(marginal[child] for child in tree.children[node]),
                                                      key=itemgetter(0)), need))
            for child in tree.children[node]:
                marginal[child] = []
        if node:
            previous, priced = node_cost(node, base[node]), []
            for i, (cost, group) in enumerate(units):
                current = node_cost(node, base[node] + i + 1)
                priced.append((cost + current - previous, group))
                previous = current
            units = priced
        marginal[node] = units
    chosen = Counter(group for candidate_cost, group in marginal[0][:need])
    return tuple(low + chosen[group] for group, low in enumerate(lo))


@dataclasses.dataclass(frozen=True)
class Roles:
    """Which nodes are masters, the fixed links kept, and the replicas still to pair."""

    masters: tuple  # master keys, sorted
    group_masters: tuple  # per group: its master keys
    pools: tuple  # per group: keys of the replicas still to pair, sorted
    kept: dict  # master key -> replica keys kept from fixed_replicas
    room: dict  # master key -> replicas it still takes for sure (q minus the kept ones)
    can_grow: frozenset  # masters that may take one replica more than q
    extras: int  # how many of them do


def assign_roles(problem: Problem, counts) -> Roles:
    replicating = {replica for replica, _master in problem.links}
    wanted = {master for _replica, master in problem.links}

    def rank(node) -> tuple:
        # Keep what already runs: fixed masters, then nodes others replicate from, never a replicating node if avoidable.
        key = node.key
        return (0 if key in problem.fixed else 3 if key in replicating else 1 if key in wanted else 2, key)

    group_masters = tuple(tuple(sorted(node.key for node in sorted(members, key=rank)[:count]))
                          for members, count in zip(problem.groups, counts))
    masters = tuple(sorted(key for keys in group_masters for key in keys))
    kept = _kept_links(problem, frozenset(masters))
    q = problem.per_master
    can_grow = frozenset(key for key in masters if len(kept.get(key, ())) <= q)
    taken = set(masters) | {replica for replicas in kept.values() for replica in replicas}
    return Roles(
        masters=masters, group_masters=group_masters,
        pools=tuple(tuple(node.key for node in members if node.key not in taken) for members in problem.groups),
        kept=kept, room={key: max(0, q - len(kept.get(key, ()))) for key in masters}, can_grow=can_grow,
        extras=problem.extras - (len(masters) - len(can_grow)),
    )


def _kept_links(problem: Problem, masters: frozenset) -> dict:
    """Fixed links whose master is a master and whose replica is not, while counts stay even (least sharing first)."""
    kept, grown, q = {}, 0, problem.per_master
    for replica, master in sorted(problem.links, key=lambda link: (pair_cost(problem, *link), link)):
        if master not in masters or replica in masters:
            continue
        have = len(kept.get(master, ()))
        if have < q or (have == q and grown < problem.extras):
            grown += have == q
            kept.setdefault(master, []).append(replica)
    return {master: tuple(sorted(replicas)) for master, replicas in kept.items()}


def pair_cost(problem: Problem, first: str, second: str) -> int:
    """Cost of a replica and its master (or of two replicas of one master) sharing domains: lexicographic weights."""
    return sum(problem.weights[level] for level, _value in problem.domains[first] & problem.domains[second])


def candidate_cost(problem: Problem, first: Candidate, second: Candidate) -> int:
    return pair_cost(problem, first.key, second.key)


def spread(nodes) -> list:
    """Nodes in an order that changes zone, then rack, then host as evenly as it can (e.g. z1, z2, z3, z1, ...)."""
    return _interleave(list(nodes), ("zone", "rack", "host"))


def _interleave(nodes: list, levels: tuple) -> list:
    if not levels or len(nodes) < 2:
        return sorted(nodes, key=lambda node: node.key)
    buckets = {}
    for node in nodes:
        buckets.setdefault(getattr(node, levels[0]), []).append(node)
    if len(buckets) == 1:
        return _interleave(nodes, levels[1:])
    placed = []
    for index, value in enumerate(sorted(buckets)):
        ordered = _interleave(buckets[value], levels[1:])
        # Item i of n sits at (2i + 1) / 2n: every bucket is spread evenly over the whole order.
        placed.extend(((2 * i + 1) / (2 * len(ordered)), index, node) for i, node in enumerate(ordered))
    placed.sort(key=itemgetter(0, 1))
    return [node for _position, _index, node in placed]
