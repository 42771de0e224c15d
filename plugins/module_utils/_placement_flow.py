# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Placement by min-cost flow between groups, for any labels, and its pairs. Private to redisops.cluster.

Pure code for _placement: group_flow() decides how many replicas of each group (or merged rack or zone) go to
the masters of each, at the least goal-1 cost with goal-2 penalties; it prices master counts for the search
and, through realise(), pairs replicas when the labels do not nest.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import typing
from collections import Counter, deque
from operator import itemgetter

from ._placement_problem import Problem, Roles, candidate_cost, pair_cost, spread

if typing.TYPE_CHECKING:
    from ._placement import Candidate


@dataclasses.dataclass(frozen=True)
class _Flow:
    cost: int  # flow_unit per unit of goal-1 cost, plus the goal-2 penalties (group, then zone)
    classes: tuple  # the (merged) groups the flow ran over
    moves: dict  # (from class, to class) -> replicas
    grows: tuple  # per class: masters that take one replica more than q


def flow_unit(problem: Problem) -> int:
    return (len(problem.nodes) + 2) ** 2  # above all goal-2 penalties: per replica, at most a group's and a zone's


def flow_classes(problem: Problem, roles: Roles, merge: bool) -> tuple:
    """Groups for the flow: single groups, or closed racks and zones merged where nothing forces pairs inside them."""
    if not merge:
        return tuple((group,) for group in range(len(problem.groups)))
    tree = problem.tree
    replicas = [len(pool) for pool in roles.pools]
    room = [sum(roles.room[key] for key in keys) for keys in roles.group_masters]
    grow = [sum(1 for key in keys if key in roles.can_grow) for keys in roles.group_masters]
    total, classes = sum(replicas), []

    def visit(node: int) -> None:
        groups = tree.groups[node]
        if tree.level[node] in ("zone", "rack") and tree.closed[node]:
            load = sum(replicas[g] + room[g] for g in groups) + min(roles.extras, sum(grow[g] for g in groups))
            if load <= total:
                classes.append(groups)
                return
        if tree.group[node] >= 0:
            classes.append((tree.group[node],))
            return
        for child in tree.children[node]:
            visit(child)

    visit(0)
    return tuple(classes)


def _class_cost(problem: Problem, first: tuple, second: tuple) -> int:
    if first != second:
        # Classes are single groups or closed racks and zones: every pair across two of them shares the same.
        return pair_cost(problem, problem.groups[first[0]][0].key, problem.groups[second[0]][0].key)
    # Inside one class: exact for a single group, an upper bound for a merged one.
    levels = {level for group in first for level, _value in problem.groups[group][0].domains()}
    return sum(problem.weights[level] for level in levels)


def group_flow(problem: Problem, roles: Roles, classes: tuple) -> _Flow:
    size = len(classes)
    masters = [[key for g in cls for key in roles.group_masters[g]] for cls in classes]
    replicas = [sum(len(roles.pools[g]) for g in cls) for cls in classes]
    room = [sum(roles.room[key] for key in keys) for keys in masters]
    grow = [sum(1 for key in keys if key in roles.can_grow) for keys in masters]
    takers = [sum(1 for key in keys if roles.room[key] or key in roles.can_grow) for keys in masters]
    amount = sum(replicas)
    if not amount:
        return _Flow(0, classes, {}, (0,) * size)
    unit, apart = flow_unit(problem), len(problem.nodes) + 1
    costs = [[unit * _class_cost(problem, a, b) for b in classes] for a in classes]
    # Goal 2: beyond one replica per master, replicas from one group, or from one zone, must share it at
    # some master. Replicas pass a hub per (their zone, target class) that charges for what exceeds it.
    zone_of = [problem.groups[cls[0]][0].zone for cls in classes]  # a class lies in one zone
    hubs = {key: 2 * size + 1 + index
            for index, key in enumerate(itertools.product(sorted(set(zone_of) - {""}), range(size)))}
    sink, arcs, kinds = 2 * size + 1 + len(hubs), [], []
    # Extra places cost more than any path can save, so exactly the extras use them.
    huge = (amount + 1) * (sink + 1) * (max(map(max, costs)) + apart + 2)
    for a in range(size):
        if replicas[a]:
            arcs.append((0, 1 + a, replicas[a], 0))
            kinds.append(None)
    for a, b in itertools.product(range(size), repeat=2):
        if replicas[a] and (room[b] or grow[b]):
            target = hubs[(zone_of[a], b)] if zone_of[a] else 1 + size + b
            first = min(replicas[a], takers[b])
            arcs.append((1 + a, target, first, costs[a][b]))
            kinds.append((a, b))
            if replicas[a] > first:
                arcs.append((1 + a, target, replicas[a] - first, costs[a][b] + apart))
                kinds.append((a, b))
    for (_zone, b), hub in sorted(hubs.items(), key=itemgetter(1)):
        if room[b] or grow[b]:
            arcs.extend(((hub, 1 + size + b, takers[b], 0), (hub, 1 + size + b, amount, 1)))
            kinds.extend(("zone", "zone"))
    for b in range(size):
        if room[b]:
            arcs.append((1 + size + b, sink, room[b], 0))
            kinds.append(None)
        if grow[b] and roles.extras:
            arcs.append((1 + size + b, sink, min(grow[b], roles.extras), huge))
            kinds.append(b)
    moves, grows, cost = Counter(), [0] * size, 0
    for arc, kind, sent in zip(arcs, kinds, _min_cost_flow(sink + 1, arcs, 0, sink, amount)):
        if not sent or kind is None:
            continue
        if isinstance(kind, int):
            grows[kind] += sent
            continue
        cost += sent * arc[3]
        if kind != "zone":
            moves[kind] += sent
    return _Flow(cost, classes, dict(moves), tuple(grows))


def _min_cost_flow(size: int, arcs, source: int, sink: int, amount: int) -> list:
    """Successive shortest paths (Dijkstra with potentials); arcs are (from, to, capacity, cost >= 0)."""
    head = [[] for _unused in range(size)]
    to, cap, cost = [], [], []
    for u, v, capacity, price in arcs:
        head[u].append(len(to))
        to.append(v)
        cap.append(capacity)
        cost.append(price)
        head[v].append(len(to))
        to.append(u)
        cap.append(0)
        cost.append(-price)
    potential, sent = [0] * size, 0
    while sent < amount:
        dist, via = [None] * size, [-1] * size
        dist[source] = 0
        queue = [(0, source)]
        while queue:
            d, u = heapq.heappop(queue)
            if d != dist[u]:
                continue
            for e in head[u]:
                if cap[e]:
                    v = to[e]
                    nd = d + cost[e] + potential[u] - potential[v]
                    if dist[v] is None or nd < dist[v]:
                        dist[v], via[v] = nd, e
                        heapq.heappush(queue, (nd, v))
        if dist[sink] is None:
            raise RuntimeError("placement flow: %d of %d units found no path" % (amount - sent, amount))
        for v in range(size):
            if dist[v] is not None:
                potential[v] += dist[v]
        push, v = amount - sent, sink
        while v != source:
            push = min(push, cap[via[v]])
            v = to[via[v] ^ 1]
        v = sink
        while v != source:
            cap[via[v]] -= push
            cap[via[v] ^ 1] += push
            v = to[via[v] ^ 1]
        sent += push
    return [arc[2] - cap[2 * i] for i, arc in enumerate(arcs)]


def realise(problem: Problem, roles: Roles, flow: _Flow) -> tuple:
    """Concrete pairs for the flow's counts: each replica goes to the master it shares least with."""
    by_key = problem.by_key
    pools = [deque(spread([by_key[key] for g in cls for key in roles.pools[g]])) for cls in flow.classes]
    assigned = {key: [by_key[replica] for replica in roles.kept.get(key, ())] for key in roles.masters}
    pairs = []
    for b, cls in enumerate(flow.classes):
        masters = spread([by_key[key] for g in cls for key in roles.group_masters[g]])
        growing = set([node.key for node in masters if node.key in roles.can_grow][:flow.grows[b]])
        left = {node.key: roles.room[node.key] + (node.key in growing) for node in masters}
        incoming = [pools[a].popleft() for a in range(len(flow.classes)) for _unused in range(flow.moves.get((a, b), 0))]
        # Dealt in spread order, one round at a time: a master's replicas come from different domains.
        for replica in spread(incoming):
            master = _best_master(problem, replica, masters, left, assigned)
            left[master.key] -= 1
            assigned[master.key].append(replica)
            pairs.append((replica.key, master.key))
    return tuple(pairs)


def _best_master(problem: Problem, replica: Candidate, masters, left, assigned) -> Candidate:
    def score(item):
        rank, master = item
        return (candidate_cost(problem, replica, master), sum(candidate_cost(problem, replica, other) for other in assigned[master.key]),
                len(assigned[master.key]), rank)

    return min(((rank, master) for rank, master in enumerate(masters) if left[master.key]), key=score)[1]
