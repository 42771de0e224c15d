# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Anti-affinity placement of masters and replicas for a new cluster. Private to redisops.cluster.

Pure code: no I/O and no Ansible imports. place() makes M = N // (R + 1) of the N candidates masters
and gives every other candidate a master. Goals, most important first:

1. no replica shares a host, rack or zone with its master: the fewest shared hosts, then the fewest
   shared racks, then the fewest shared zones (a host fails most often);
2. the replicas of one master sit in distinct domains;
3. no domain holds so many masters that losing it leaves fewer than a majority to vote failovers;
4. replica counts differ by at most one (always met: nodes beyond M * (R + 1) go one per master).

Labels are compared as they are, like the anti-affinity finding of _topology: racks named alike in
two zones count as one rack. An unknown rack or zone ('') is never shared.

Goal 1 is exact (when a plan exists in which no replica shares a domain with its master, place()
finds one; in general it reaches the lexicographic optimum, over the plans that keep the fixed masters
and the kept fixed_replicas links) whenever the labels nest - every host in
one rack and zone, every rack in one zone - and, with any labels, for inputs small enough to search
(EXHAUSTIVE_LIMIT in _placement_masters). Other inputs get the best plan a greedy and a local search
find, and the report says so when it matters. How:

- candidates with equal (host, rack, zone) form a group; a domain is a host, a rack or a zone;
- a domain holding S replicas and D replica places (the replicas its masters take) keeps at least
  S + D - T pairs inside itself, T = N - M being the number of pairs: the rest cannot pair with more;
- master counts per group minimise the sum of those excesses, weighted host >> rack >> zone, then
  goal 3, then an even spread: a greedy over the tree zone > rack > group (exact for nesting labels),
  or an exhaustive search, each choice priced by a min-cost flow between groups;
- with nesting labels the bound is always reached: pairs are made one at a time, each keeping it
  tight. Otherwise a min-cost flow between groups decides how many replicas of each go to each.

This module holds the public face and checks the input; place() then uses, in order: _placement_problem
(the groups, the domain tree, the roles), _placement_masters (master counts per group), _placement_pairing
(the pairs: on the tree, or by the flow of _placement_flow, then swaps) and _placement_report (unmet goals).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from ._placement_masters import master_counts
from ._placement_pairing import pair_replicas
from ._placement_problem import LEVELS, Problem, Roles, assign_roles, build_problem, spread
from ._placement_report import unmet_goals


class PlacementError(ValueError):
    """Input that no placement can serve (the caller's error, never a bug)."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A node that may become a master or a replica, with its fault domains ('' = unknown)."""

    key: str
    host: str  # '' = the address part of key
    rack: str = ""
    zone: str = ""

    def domains(self) -> tuple:
        """(level, value) for every known domain, host first."""
        values = (self.host or address_host(self.key), self.rack, self.zone)
        return tuple((level, value) for level, value in zip(LEVELS, values) if value)

    def domain(self, level: str) -> str:
        """The value at one level, '' when unknown."""
        if level == "host":
            return self.host or address_host(self.key)
        return getattr(self, level)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Masters in slot order, (replica, master) pairs, and the goals not met, each with the reason."""

    masters: tuple
    replicas: tuple  # (replica key, master key), sorted
    unmet: tuple = ()  # one message per unmet goal
    shared: tuple = ()  # (replica key, master key, shared levels) for every pair sharing a domain

    def replicas_of(self, master_key: str) -> tuple:
        return tuple(replica for replica, master in self.replicas if master == master_key)

    def master_of(self, replica_key: str):
        return next((master for replica, master in self.replicas if replica == replica_key), None)


def address_host(key: str) -> str:
    """The host part of 'host:port', '[v6]:port' or 'v6:port' (last colon); a key without a port is its own host."""
    if key.startswith("["):
        return key[1:].partition("]")[0]
    host, sep, _port = key.rpartition(":")
    return host if sep and host else key


def shared_domains(a: Candidate, b: Candidate) -> tuple:
    """The levels at which a and b sit in the same known domain, e.g. ('host', 'zone')."""
    theirs = dict(b.domains())
    return tuple(level for level, value in a.domains() if theirs.get(level) == value)


def place(candidates, replicas: int, fixed_masters=(), fixed_replicas=None) -> Placement:
    """Choose the masters, and a master for every other candidate (the goals: see the module docstring).

    fixed_masters stay masters (they serve slots in a half-made cluster). fixed_replicas maps replica
    key -> master key for links that already replicate: each is kept when its master is a master, its
    replica is not, and replica counts stay even. Same input in any order, same result.
    """
    problem = _problem(tuple(candidates), replicas, fixed_masters, fixed_replicas or {})
    counts, exact = master_counts(problem)
    roles = assign_roles(problem, counts)
    return _placement(problem, roles, pair_replicas(problem, roles), exact)


# --- the input ---------------------------------------------------------------------------------------

def _problem(candidates, replicas, fixed_masters, fixed_replicas) -> Problem:
    """The problem the input poses, or PlacementError saying what is wrong with the input."""
    nodes = _normalise(candidates)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise PlacementError("replicas must be a whole number, 0 or more, got %r" % (replicas,))
    masters = len(nodes) // (replicas + 1)
    if not masters:
        raise PlacementError("%d node(s) cannot make one master with %d replica(s)" % (len(nodes), replicas))
    by_key = {node.key: node for node in nodes}
    fixed = frozenset(fixed_masters)
    unknown = sorted(fixed - set(by_key))
    if unknown:
        raise PlacementError("fixed_masters names %s, not among the candidates" % ", ".join(unknown))
    if len(fixed) > masters:
        raise PlacementError("%d fixed masters, but %d nodes with %d replica(s) each make only %d masters"
                             % (len(fixed), len(nodes), replicas, masters))
    return build_problem(nodes, by_key, masters, fixed, _links(fixed_replicas, by_key, fixed))


def _normalise(candidates) -> tuple:
    nodes = []
    for candidate in candidates:
        if not isinstance(candidate, Candidate) or not candidate.key:
            raise PlacementError("each candidate must be a Candidate with a key, got %r" % (candidate,))
        nodes.append(dataclasses.replace(candidate, host=candidate.host or address_host(candidate.key)))
    if not nodes:
        raise PlacementError("there are no candidate nodes")
    repeated = sorted(key for key, count in Counter(node.key for node in nodes).items() if count > 1)
    if repeated:
        raise PlacementError("the candidates list %s more than once" % ", ".join(repeated))
    return tuple(sorted(nodes, key=lambda node: node.key))


def _links(fixed_replicas, by_key, fixed) -> tuple:
    links = []
    for replica, master in sorted(dict(fixed_replicas).items()):
        missing = [key for key in (replica, master) if key not in by_key]
        if missing:
            raise PlacementError("fixed_replicas names %s, not among the candidates" % ", ".join(missing))
        if replica == master:
            raise PlacementError("fixed_replicas makes %s a replica of itself" % replica)
        if replica in fixed:
            raise PlacementError("%s is both a fixed master and a fixed replica of %s" % (replica, master))
        links.append((replica, master))
    return tuple(links)


# --- the result --------------------------------------------------------------------------------------

def _placement(problem: Problem, roles: Roles, pairs: tuple, exact: bool) -> Placement:
    kept = tuple((replica, master) for master, replicas in roles.kept.items() for replica in replicas)
    replicas = tuple(sorted(pairs + kept))
    masters = tuple(node.key for node in spread([problem.by_key[key] for key in roles.masters]))
    shared = tuple((replica, master, levels) for replica, master in replicas
                   for levels in [shared_domains(problem.by_key[replica], problem.by_key[master])] if levels)
    return Placement(masters, replicas, unmet_goals(problem, masters, replicas, shared, frozenset(kept), exact), shared)
