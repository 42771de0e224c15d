# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The search for how many masters each group holds, and its costs. Private to redisops.cluster.

Pure code for _placement: master counts per group minimise the goal-1 excesses, then goal 3, then churn of
what already runs, then an even spread. An exhaustive search when the count vectors are few, else a greedy over
the domain tree (exact for nesting labels), improved for labels that do not nest by a local search priced by the
flow between groups.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

from ._placement_flow import flow_unit, group_flow
from ._placement_problem import Problem, allocate, assign_roles, node_sums, pair_cost

# Inputs with up to this many master-count vectors (one count per group) are searched exhaustively.
EXHAUSTIVE_LIMIT = 2000
# Labels that do not nest: up to this many flow evaluations try to improve the greedy's master counts,
# for up to LOCAL_SEARCH_GROUPS groups (each evaluation is a min-cost flow over the groups).
LOCAL_SEARCH_BUDGET = 60
LOCAL_SEARCH_GROUPS = 24


def master_counts(problem: Problem) -> tuple:
    """Masters per group, and whether goal 1 is known to be optimal for them."""
    lo = tuple(sum(1 for node in members if node.key in problem.fixed) for members in problem.groups)
    hi = tuple(len(members) for members in problem.groups)
    if _few_vectors(lo, hi, problem.masters):
        return _exhaustive(problem, lo, hi), True
    counts = _tree_counts(problem, lo, hi)
    if problem.nested:
        return counts, True
    return _local_search(problem, counts, lo, hi), False


def _few_vectors(lo, hi, total: int) -> bool:
    product = 1
    for low, high in zip(lo, hi):
        product *= high - low + 1
    if product <= EXHAUSTIVE_LIMIT:
        return True
    if len(lo) > 16 or total > 64:
        return False
    ways = [1] + [0] * total  # ways[s]: vectors over the groups so far that sum to s
    for low, high in zip(lo, hi):
        ways = [min(EXHAUSTIVE_LIMIT + 1, sum(ways[s - k] for k in range(low, min(high, s) + 1)))
                for s in range(total + 1)]
    return ways[total] <= EXHAUSTIVE_LIMIT


def _vectors(lo, hi, total: int):
    """Every vector with lo <= v <= hi and sum(v) == total, in lexicographic order."""
    rest_lo = [sum(lo[i:]) for i in range(len(lo) + 1)]
    rest_hi = [sum(hi[i:]) for i in range(len(hi) + 1)]

    def extend(index: int, left: int, prefix: tuple):
        if index == len(lo):
            yield prefix
            return
        for count in range(max(lo[index], left - rest_hi[index + 1]), min(hi[index], left - rest_lo[index + 1]) + 1):
            yield from extend(index + 1, left - count, prefix + (count,))

    return extend(0, total, ())


def _exhaustive(problem: Problem, lo, hi) -> tuple:
    best = None
    for counts in _vectors(lo, hi, problem.masters):
        # The flow cannot cost less than the bound, and the rest of the key is known without it.
        floor = (_flow_floor(problem, counts),) + _role_key(problem, counts)
        if best is not None and floor > best:
            continue
        key = (_flow_cost(problem, counts),) + _role_key(problem, counts)
        if best is None or key < best:
            best = key
    return best[-1]


def _role_key(problem: Problem, counts) -> tuple:
    return (_goal3_excess(problem, counts), _churn(problem, counts), _balance(problem, counts), counts)


def _flow_cost(problem: Problem, counts) -> int:
    roles = assign_roles(problem, counts)
    kept = sum(pair_cost(problem, replica, master) for master, replicas in roles.kept.items() for replica in replicas)
    flow = group_flow(problem, roles, tuple((group,) for group in range(len(problem.groups))))
    return flow.cost + flow_unit(problem) * kept


def _flow_floor(problem: Problem, counts) -> int:
    if problem.links:
        return 0  # kept links move pairs out of the flow: no simple bound
    masters = _domain_counts(problem, counts)
    lean = problem.per_master - 1
    excess = sum(problem.weights[domain[0]] * max(0, size + lean * masters[domain] - problem.pairs)
                 for domain, size in problem.domain_size.items())
    return flow_unit(problem) * excess


def _domain_counts(problem: Problem, counts) -> Counter:
    return Counter({domain: sum(counts[g] for g in groups) for domain, groups in problem.domain_groups.items()})


def _goal3_excess(problem: Problem, counts) -> int:
    cap = (problem.masters - 1) // 2
    return sum(problem.weights[domain[0]] * max(0, count - cap)
               for domain, count in _domain_counts(problem, counts).items())


def _churn(problem: Problem, counts) -> int:
    return sum(max(0, count - free) + max(0, wanted - count)
               for count, (free, wanted) in zip(counts, problem.group_roles))


def _balance(problem: Problem, counts) -> int:
    return sum(count * count for count in _domain_counts(problem, counts).values()) + sum(c * c for c in counts)


def _local_search(problem: Problem, counts, lo, hi) -> tuple:
    """Labels that do not nest: move one master at a time between groups while the flow says it helps."""
    if len(problem.groups) > LOCAL_SEARCH_GROUPS:
        return counts
    best = (_flow_cost(problem, counts),) + _role_key(problem, counts)
    budget = LOCAL_SEARCH_BUDGET
    improved = True
    while improved and budget > 0:
        improved = False
        for source, target in itertools.permutations(range(len(counts)), 2):
            if counts[source] <= lo[source] or counts[target] >= hi[target]:
                continue
            moved = list(counts)
            moved[source] -= 1
            moved[target] += 1
            moved = tuple(moved)
            if (_flow_floor(problem, moved),) + _role_key(problem, moved) >= best:
                continue
            budget -= 1
            key = (_flow_cost(problem, moved),) + _role_key(problem, moved)
            if key < best:
                best, counts, improved = key, moved, True
                break
            if budget <= 0:
                break
    return counts


@dataclasses.dataclass(frozen=True)
class _Scales:
    """Multipliers that make one scalar cost lexicographic: goal 1, goal 3, churn, then balance."""

    goal1: int
    goal3: int
    churn: int


def _scales(problem: Problem) -> _Scales:
    n = len(problem.nodes) + 1
    churn = 4 * n * n + 1  # above any balance sum (count squared, over at most 4 levels)
    goal3 = churn * (2 * n + 1)  # above any churn (at most 2 per node)
    goal1 = goal3 * (3 * n * sum(problem.weights.values()) + 1)  # above any goal-3 excess
    return _Scales(goal1, goal3, churn)


def _tree_counts(problem: Problem, lo, hi) -> tuple:
    """Masters per group by the tree greedy; with extra replicas, the better of two ways to place them."""
    tree, scales, lean = problem.tree, _scales(problem), problem.per_master - 1
    nothing = [0] * len(tree.level)

    def masters_cost(extra):
        return lambda node, count: _node_term(problem, scales, node, count, lean * count + extra[node])

    def group_cost(group, count):
        free, wanted = problem.group_roles[group]
        return scales.churn * (max(0, count - free) + max(0, wanted - count)) + count * count

    plain = allocate(tree, problem.masters, lo, hi, masters_cost(nothing), group_cost)
    if not problem.extras:
        return plain
    # Extra replicas need masters where the bound has room: either add them to the masters chosen
    # without them, or place the masters that take them first and the others around them.
    options = []
    placed = node_sums(tree, plain)
    grown = allocate(tree, problem.extras, (0,) * len(lo), plain, lambda node, count: scales.goal1 * _excess(
        problem, node, lean * placed[node] + count) + count * count, lambda group, count: 0)
    options.append((_total(problem, scales, plain, grown, group_cost), plain))
    if options[0][0] == _total(problem, scales, plain, (0,) * len(lo), group_cost):
        return plain  # the extras cost nothing there: nothing can beat it
    fixed = node_sums(tree, lo)
    big = allocate(tree, problem.extras, (0,) * len(lo), hi, lambda node, count: scales.goal1 * _excess(
        problem, node, lean * fixed[node] + (lean + 1) * count) + count * count, lambda group, count: 0)
    floor = tuple(max(a, b) for a, b in zip(lo, big))
    if sum(floor) <= problem.masters:
        around = allocate(tree, problem.masters, floor, hi, masters_cost(node_sums(tree, big)), group_cost)
        options.append((_total(problem, scales, around, big, group_cost), around))
    return min(options)[1]


def _excess(problem: Problem, node: int, weight: int) -> int:
    tree = problem.tree
    return problem.weights[tree.level[node]] * max(0, tree.size[node] + weight - problem.pairs)


def _node_term(problem: Problem, scales: _Scales, node: int, count: int, weight: int) -> int:
    crowd = max(0, count - (problem.masters - 1) // 2)
    return (scales.goal1 * _excess(problem, node, weight)
            + scales.goal3 * problem.weights[problem.tree.level[node]] * crowd + count * count)


def _total(problem: Problem, scales: _Scales, masters, extras, group_cost) -> int:
    tree, lean = problem.tree, problem.per_master - 1
    count, grown = node_sums(tree, masters), node_sums(tree, extras)
    return (sum(_node_term(problem, scales, node, count[node], lean * count[node] + grown[node])
                for node in range(1, len(tree.level)))
            + sum(group_cost(group, masters[group]) for group in range(len(masters))))
