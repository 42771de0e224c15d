# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pairing of replicas with masters once the masters are chosen. Private to redisops.cluster.

Pure code for _placement: with nesting labels, pairs are made one at a time on the domain tree, each keeping
the bound tight; otherwise the flow between groups (_placement_flow) decides, or, with too many groups for it,
the tree of the levels that nest. Swaps between two masters' replicas then keep replicas apart.
"""

from __future__ import annotations

import heapq
import typing
from collections import Counter, deque

from ._placement_flow import flow_classes, group_flow, realise
from ._placement_problem import DomainTree, Problem, Roles, allocate, candidate_cost, nesting_tree, node_sums, spread

if typing.TYPE_CHECKING:
    from ._placement import Candidate

# Above this many groups the flow runs over merged groups (a rack or zone whose labels appear nowhere
# else); when that still leaves more, the pairing on the tree of split domains replaces the flow.
FLOW_GROUPS = 40
# How many conflicting candidates the pairing looks past to keep a master's replicas apart (goal 2).
LOOKAHEAD = 8
# At most this many replicas are looked at as swap partners to keep a master's replicas apart (goal 2).
SWAP_BUDGET = 200000


def pair_replicas(problem: Problem, roles: Roles) -> tuple:
    """(replica, master) pairs for the replicas the roles leave to pair: on the domain tree or by the flow, then swaps."""
    if problem.nested:
        try:
            return _apart(problem, roles, tree_pairs(problem, roles))
        except _Stuck:  # cannot happen while the bound is always reachable; the flow is the safe way out
            pass
    classes = flow_classes(problem, roles, len(problem.groups) > FLOW_GROUPS)
    if len(classes) > FLOW_GROUPS and not problem.nested:
        # Too many groups for a flow (labels cross everywhere): pair on a tree of the levels that nest
        # with the hosts, most important first, exactly; the swaps then repair the level left out.
        try:
            return _apart(problem, roles, tree_pairs(problem, roles, nesting_tree(problem.groups)))
        except _Stuck:
            pass
    return _apart(problem, roles, realise(problem, roles, group_flow(problem, roles, classes)))


# --- swaps keeping replicas apart ----------------------------------------------------------------------

def _apart(problem: Problem, roles: Roles, pairs: tuple) -> tuple:
    """Finishing touch: swap the replicas of two masters when that shares less with the masters (goal 1),
    or keeps a master's replicas further apart (goal 2) without sharing more with the masters. Worst
    first, within SWAP_BUDGET looks. A domain holding more replicas than there are masters outside it
    forces goal-2 conflicts: those are left alone."""
    by_key = problem.by_key
    master_of = dict(pairs)
    mine = {key: [by_key[replica] for replica in roles.kept.get(key, ())] for key in roles.masters}
    for replica, master in pairs:
        mine[master].append(by_key[replica])
    crowded = _crowded_domains(problem, roles.masters, master_of, problem.domains)
    troubles = sorted((tuple(-cost for cost in _trouble(problem, node, master, mine)), master, node.key)
                      for master in roles.masters for node in mine[master] if node.key in master_of
                      and (candidate_cost(problem, node, by_key[master]) or _clashes(node, mine[master], problem.domains) - crowded))
    budget = [SWAP_BUDGET]
    for _worst, master, key in troubles:
        if budget[0] <= 0:
            break
        if master_of[key] != master or _trouble(problem, by_key[key], master, mine) == (0, 0):
            continue  # moved, or resolved by an earlier swap
        swap = _find_swap(problem, master, by_key[key], mine, master_of, budget)
        if swap is not None:
            other, node = swap
            mine[master][mine[master].index(by_key[key])] = node
            mine[other][mine[other].index(node)] = by_key[key]
            master_of[key], master_of[node.key] = other, master
    return tuple(sorted(master_of.items()))


def _trouble(problem: Problem, replica: Candidate, master: str, mine: dict) -> tuple:
    """(what replica shares with its master, what it shares with the master's other replicas)."""
    return (candidate_cost(problem, replica, problem.by_key[master]), _crowding(problem, replica, mine[master]))


def _clashes(replica: Candidate, replicas: list, domains: dict) -> frozenset:
    """The domains replica shares with the other replicas of its master."""
    mine = domains[replica.key]
    return frozenset(domain for other in replicas if other is not replica for domain in mine & domains[other.key])


def _find_swap(problem: Problem, master: str, replica: Candidate, mine: dict, master_of: dict, budget: list):
    """(other master, its replica) whose exchange with replica gains on goal 1, or on goal 2 without a goal-1 loss."""
    by_key = problem.by_key
    staying = [node for node in mine[master] if node is not replica]
    now = _trouble(problem, replica, master, mine)
    for other, theirs in mine.items():
        if other == master:
            continue
        budget[0] -= len(theirs)
        if budget[0] < 0:
            return None
        for node in theirs:
            # Cheap test first: it must sit better than replica at master.
            if node.key not in master_of or (candidate_cost(problem, node, by_key[master]),
                                             sum(candidate_cost(problem, node, near) for near in staying)) >= now:
                continue
            if _swap_gain(problem, by_key[master], replica, mine[master], by_key[other], node, theirs) > (0, 0):
                return other, node
    return None


def _crowded_domains(problem: Problem, masters: tuple, master_of: dict, domains: dict) -> frozenset:
    chosen, replicas, held = set(masters), Counter(), Counter()
    for node in problem.nodes:
        for domain in domains[node.key]:
            if node.key in chosen:
                held[domain] += 1
            elif node.key in master_of:
                replicas[domain] += 1
    return frozenset(domain for domain, count in replicas.items() if count > len(masters) - held[domain])


def _crowding(problem: Problem, replica: Candidate, replicas: list) -> int:
    """What replica shares with the master's other replicas (goal 2 cost)."""
    return sum(candidate_cost(problem, replica, other) for other in replicas if other is not replica)


def _swap_gain(problem: Problem, master: Candidate, replica: Candidate, mine: list, other: Candidate, swap: Candidate,
               theirs: list) -> tuple:
    """(goal-1 gain, goal-2 gain) of giving replica to other and swap to master; no goal-1 loss allowed."""
    before = candidate_cost(problem, replica, master) + candidate_cost(problem, swap, other)
    after = candidate_cost(problem, replica, other) + candidate_cost(problem, swap, master)
    if after > before:
        return (-1, 0)
    crowd_before = _crowding(problem, replica, mine) + _crowding(problem, swap, theirs)
    crowd_after = (sum(candidate_cost(problem, swap, node) for node in mine if node is not replica)
                   + sum(candidate_cost(problem, replica, node) for node in theirs if node is not swap))
    return (before - after, crowd_before - crowd_after)


# --- pairing on the nested domain tree --------------------------------------------------------------------

class _Stuck(Exception):
    """The tight pairing found no tight pair (the bound would not be reachable)."""


def tree_pairs(problem: Problem, roles: Roles, tree=None) -> tuple:
    """Pairs made one at a time on tree (the domain tree by default), reaching the bound; _Stuck if they cannot."""
    tree = tree or problem.tree
    return _TightPairing(problem, roles, tree, _tree_capacity(problem, roles, tree)).run()


def _tree_capacity(problem: Problem, roles: Roles, tree: DomainTree) -> dict:
    """Replicas per master: q minus kept links, plus one for the masters that take the extras (bound-optimal)."""
    capacity = dict(roles.room)
    if not roles.extras:
        return capacity
    by_key = problem.by_key
    growable = [[node.key for node in spread([by_key[key] for key in keys]) if node.key in roles.can_grow]
                for keys in roles.group_masters]
    load = node_sums(tree, [len(pool) + sum(roles.room[key] for key in keys)
                            for pool, keys in zip(roles.pools, roles.group_masters)])
    total, scale = sum(map(len, roles.pools)), 4 * (roles.extras + 1) ** 2 + 1

    def cost(node: int, count: int) -> int:
        over = max(0, load[node] + count - total)
        return scale * problem.weights[tree.level[node]] * over + count * count

    counts = allocate(tree, roles.extras, (0,) * len(growable), tuple(map(len, growable)), cost, lambda g, k: 0)
    for keys, count in zip(growable, counts):
        for key in keys[:count]:
            capacity[key] += 1
    return capacity


class _TightPairing:
    """Pairs replicas with master places over the nested domain tree, one pair at a time.

    The bound is the sum over domains of weight * (S + D - T)+. A pair keeps "made so far + bound of
    the rest" equal to the bound at the start when every domain holding both ends is over-full
    (S + D > T) and every domain with S + D >= T holds one end; each step picks such a pair, so the
    result reaches the bound. Within those limits the choices spread each master's replicas (goal 2).
    Mutable working state of one tree_pairs call; heaps hold stale entries until they surface.
    """

    def __init__(self, problem: Problem, roles: Roles, tree: DomainTree, capacity: dict):
        self.tree = tree
        size = len(tree.level)
        self.replicas = {tree.leaf[g]: deque(pool) for g, pool in enumerate(roles.pools)}
        self.left = {key: count for key, count in capacity.items() if count}
        order = spread([problem.by_key[key] for key in roles.masters])
        self.rank = {node.key: index for index, node in enumerate(order)}
        self.home = {key: tree.leaf[g] for g, keys in enumerate(roles.group_masters) for key in keys}
        self.count = {key: len(roles.kept.get(key, ())) for key in roles.masters}
        leaf_of = {node.key: tree.leaf[g] for g, members in enumerate(problem.groups) for node in members}
        self.used = {key: {up for replica in roles.kept.get(key, ()) for up in tree.path[leaf_of[replica]][:-1]}
                     for key in roles.masters}
        self.S, self.D = [0] * size, [0] * size
        for leaf, pool in self.replicas.items():
            for up in tree.path[leaf]:
                self.S[up] += len(pool)
        for key, count in self.left.items():
            for up in tree.path[self.home[key]]:
                self.D[up] += count
        self.T = self.S[0]
        if self.D[0] != self.T:
            raise _Stuck()
        self.by_value = [[] for _unused in range(size)]  # children by S + D
        self.with_replicas = [[] for _unused in range(size)]  # children with S > 0, by S + D
        self.with_places = [[] for _unused in range(size)]  # children with D > 0, by S + D
        self.masters = [[] for _unused in range(size)]  # masters below, fewest replicas first
        for node in range(1, size):
            self._push(node)
        for key in self.left:
            self._push_master(key)
        self.pairs = []

    def run(self) -> tuple:
        while self.T:
            self._step()
        return tuple(self.pairs)

    def _value(self, node: int) -> int:
        return self.S[node] + self.D[node]

    def _push(self, node: int) -> None:
        up, value = self.tree.parent[node], self._value(node)
        if value:
            heapq.heappush(self.by_value[up], (-value, node))
        if self.S[node]:
            heapq.heappush(self.with_replicas[up], (-value, node))
        if self.D[node]:
            heapq.heappush(self.with_places[up], (-value, node))

    def _push_master(self, key: str) -> None:
        for up in self.tree.path[self.home[key]]:
            heapq.heappush(self.masters[up], (self.count[key], self.rank[key], key))

    def _live(self, entry: tuple, need) -> bool:
        return -entry[0] == self._value(entry[1]) and need[entry[1]] > 0

    def _full_children(self, node: int) -> list:
        """Children with S + D >= T: at most two (two only when each holds exactly half)."""
        heap, found = self.by_value[node], []
        while heap and len(found) < 2:
            entry = heap[0]
            if -entry[0] != self._value(entry[1]):
                heapq.heappop(heap)
            elif -entry[0] < self.T:
                break
            else:
                found.append(heapq.heappop(heap))
        for entry in found:
            heapq.heappush(heap, entry)
        return [entry[1] for entry in found]

    def _chains(self) -> list:
        """The nested domains with S + D >= T, as one or two chains from the top down."""
        chains, stack = [], [(0, ())]
        while stack:
            node, chain = stack.pop()
            full = self._full_children(node)
            if not full and chain:
                chains.append(chain)
            for child in reversed(full):
                stack.append((child, chain + (child,)))
        return chains

    def _step(self) -> None:
        chains = self._chains()
        if not chains:  # nothing is full: any pair across two top-level domains
            master = self._master(0, None)
            leaf = self._replica(0, self._toward(0, self.home[master]), master)
        elif len(chains) == 2:  # two halves: one end in each
            first, second = chains[0][-1], chains[1][-1]
            if not (self.S[first] and self.D[second]):
                first, second = second, first
            master = self._master(second, None)
            leaf = self._replica(first, None, master)
        else:
            chain = chains[0]
            deepest = chain[-1]
            over = [node for node in chain if self._value(node) > self.T]
            if over and over[-1] == deepest:  # over-full: pair inside it, across its children
                leaf, master = self._inside(deepest)
            else:  # exactly full: one end in it, the other beside it under the deepest over-full domain
                top = over[-1] if over else 0
                below = chain[len(over)]
                if self.D[deepest] and self.S[top] > self.S[below]:
                    master = self._master(deepest, None)
                    leaf = self._replica(top, below, master)
                else:
                    master = self._master(top, below)
                    leaf = self._replica(deepest, None, master)
        self._join(leaf, master)

    def _inside(self, node: int) -> tuple:
        master = self._master(node, None)
        if self.tree.group[node] >= 0:  # one host holds more than the rest can pair with
            return node, master
        child = self._toward(node, self.home[master])
        if self.S[node] > self.S[child]:
            return self._replica(node, child, master), master
        # Every replica in node sits in master's child: take the master from another child.
        master = self._master(node, child)
        return self._replica(child, None, master), master

    def _toward(self, node: int, leaf: int) -> int:
        """The child of node on the way to leaf."""
        path = self.tree.path[leaf]
        return path[path.index(node) - 1]

    def _replica(self, node: int, exclude, master: str) -> int:
        """A leaf below node (not below exclude) with a replica, away from master's other replicas if it can."""
        avoid = self.used[master]
        while self.tree.group[node] < 0:
            node = self._pick(self.with_replicas[node], self.S, exclude, avoid)
            exclude = None
        return node

    def _master(self, node: int, exclude) -> str:
        """The master below node (not below exclude) with the fewest replicas so far."""
        if exclude is not None:
            node = self._pick(self.with_places[node], self.D, exclude, ())
        heap = self.masters[node]
        while heap:
            count, _rank, key = heap[0]
            if count == self.count[key] and self.left[key]:
                return key
            heapq.heappop(heap)
        raise _Stuck()

    def _pick(self, heap: list, need, exclude, avoid) -> int:
        """The fullest live child in heap, skipping exclude and preferring children not in avoid."""
        seen, chosen, fallback = [], None, None
        while heap and chosen is None:
            entry = heapq.heappop(heap)
            if not self._live(entry, need):
                continue
            seen.append(entry)
            child = entry[1]
            if child == exclude:
                continue
            if child in avoid:
                fallback = child if fallback is None else fallback
                if len(seen) > LOOKAHEAD:
                    break
            else:
                chosen = child
        for entry in seen:
            heapq.heappush(heap, entry)
        chosen = fallback if chosen is None else chosen
        if chosen is None:
            raise _Stuck()
        return chosen

    def _join(self, leaf: int, master: str) -> None:
        replica = self.replicas[leaf].popleft()
        path, home = self.tree.path[leaf], self.tree.path[self.home[master]]
        for node in path:
            self.S[node] -= 1
        for node in home:
            self.D[node] -= 1
        self.T -= 1
        for node in sorted(set(path) | set(home)):
            if node:
                self._push(node)
        self.count[master] += 1
        self.left[master] -= 1
        if self.left[master]:
            self._push_master(master)
        self.used[master].update(path[:-1])
        self.pairs.append((replica, master))
