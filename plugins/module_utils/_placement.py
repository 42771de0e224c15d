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
(EXHAUSTIVE_LIMIT). Other inputs get the best plan a greedy and a local search find, and the report
says so when it matters. How:

- candidates with equal (host, rack, zone) form a group; a domain is a host, a rack or a zone;
- a domain holding S replicas and D replica places (the replicas its masters take) keeps at least
  S + D - T pairs inside itself, T = N - M being the number of pairs: the rest cannot pair with more;
- master counts per group minimise the sum of those excesses, weighted host >> rack >> zone, then
  goal 3, then an even spread: a greedy over the tree zone > rack > group (exact for nesting labels),
  or an exhaustive search, each choice priced by a min-cost flow between groups;
- with nesting labels the bound is always reached: pairs are made one at a time, each keeping it
  tight. Otherwise a min-cost flow between groups decides how many replicas of each go to each.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from ._placement_masters import master_counts
from ._placement_pairing import pair_replicas
from ._placement_problem import LEVELS, Problem, Roles, assign_roles, build_problem, spread


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


# --- the result and its report -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Tally:
    """Per domain: candidates, masters, replicas, and replica places (replicas its masters take)."""

    nodes: Counter
    masters: Counter
    replicas: Counter
    places: Counter


def _placement(problem: Problem, roles: Roles, pairs: tuple, exact: bool) -> Placement:
    kept = tuple((replica, master) for master, replicas in roles.kept.items() for replica in replicas)
    replicas = tuple(sorted(pairs + kept))
    masters = tuple(node.key for node in spread([problem.by_key[key] for key in roles.masters]))
    shared = tuple((replica, master, levels) for replica, master in replicas
                   for levels in [shared_domains(problem.by_key[replica], problem.by_key[master])] if levels)
    tally = _tally(problem, masters, replicas)
    unmet = (_goal1(problem, tally, shared, frozenset(kept), exact), _goal2(problem, tally, masters, replicas),
             _goal3(problem, tally, exact), _goal4(problem, masters, replicas))
    return Placement(masters, replicas, tuple(message for message in unmet if message), shared)


def _tally(problem: Problem, masters: tuple, replicas: tuple) -> _Tally:
    taken = Counter(master for _replica, master in replicas)
    chosen = set(masters)
    tally = _Tally(Counter(), Counter(), Counter(), Counter())
    for node in problem.nodes:
        for domain in node.domains():
            tally.nodes[domain] += 1
            if node.key in chosen:
                tally.masters[domain] += 1
                tally.places[domain] += taken[node.key]
            else:
                tally.replicas[domain] += 1
    return tally


def _plural(count: int, word: str) -> str:
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def _goal1(problem: Problem, tally: _Tally, shared: tuple, kept: frozenset, exact: bool) -> str:
    parts, reasons = [], []
    for index, level in enumerate(LEVELS):
        where = Counter(problem.by_key[replica].domain(level) for replica, _master, levels in shared if level in levels)
        total = sum(where.values())
        if not total:
            continue
        if len(where) == 1:
            verb, their = ("shares", "its") if total == 1 else ("share", "their")
            parts.append("%s %s %s %s with %s master" % (_plural(total, "replica"), verb, level, next(iter(where)), their))
        else:
            parts.append("%s share a %s with their master (%s)" % (
                _plural(total, "replica"), level, ", ".join("%s: %d" % item for item in sorted(where.items()))))
        crowded = sorted(domain for domain in tally.nodes
                         if domain[0] == level and tally.replicas[domain] + tally.places[domain] > problem.pairs)
        reasons.extend(_crowded(problem, tally, domain) for domain in crowded)
        linked = sum(1 for replica, master, levels in shared if level in levels and (replica, master) in kept)
        if linked:
            reasons.append("%s kept from fixed_replicas" % _plural(linked, "link"))
        forced = sum(tally.replicas[domain] + tally.places[domain] - problem.pairs for domain in crowded)
        if total > forced + linked:
            reasons.append(_unforced(index, exact))
    if not parts:
        return ""
    return "goal 1: %s: %s" % ("; ".join(parts), "; ".join(reasons))


def _crowded(problem: Problem, tally: _Tally, domain: tuple) -> str:
    level, value = domain
    inside = tally.replicas[domain] + tally.places[domain]
    return ("%s %s holds %d of %d nodes, more than the other %ss can pair with: its %s and its masters' %s "
            "need %d partners outside it, the rest offer %d"
            % (level, value, tally.nodes[domain], len(problem.nodes), level, _plural(tally.replicas[domain], "replica"),
               _plural(tally.places[domain], "replica place"), inside, 2 * problem.pairs - inside))


def _unforced(index: int, exact: bool) -> str:
    if not exact:
        return ("no plan sharing fewer was found; the labels do not nest (a host or rack spans several racks "
                "or zones), so this is the best found, not a proven optimum")
    if index:
        return "no plan shares fewer %ss without sharing more %ss" % (LEVELS[index], "s or ".join(LEVELS[:index]))
    return "no plan shares fewer hosts"


def _goal2(problem: Problem, tally: _Tally, masters: tuple, replicas: tuple) -> str:
    by_key = problem.by_key
    mine = {master: [] for master in masters}
    for replica, master in replicas:
        mine[master].append(by_key[replica])
    parts = []
    for level in LEVELS:
        affected = []
        for master in masters:
            seen = Counter(node.domain(level) for node in mine[master] if node.domain(level))
            doubled = sorted(value for value, count in seen.items() if count > 1)
            if doubled:
                affected.append((master, doubled[0]))
        if not affected:
            continue
        master, value = affected[0]
        first, second = [node.key for node in mine[master] if node.domain(level) == value][:2]
        parts.append("%s %s replicas that share a %s (e.g. %s and %s, replicas of %s, both in %s %s): %s" % (
            _plural(len(affected), "master"), "has" if len(affected) == 1 else "have", level, first, second, master,
            level, value, _apart_reasons(problem, tally, level, [(key, len(mine[key])) for key, _value in affected])))
    return "goal 2: %s" % "; ".join(parts) if parts else ""


def _apart_reasons(problem: Problem, tally: _Tally, level: str, affected: list) -> str:
    reasons = []
    for domain in sorted(tally.replicas):
        outside = problem.masters - tally.masters[domain]
        if domain[0] == level and tally.replicas[domain] > outside:
            reasons.append("%s %s holds %s for %s outside it" % (
                level, domain[1], _plural(tally.replicas[domain], "replica"), _plural(outside, "master")))
    unknown = sum(1 for node in problem.nodes if not node.domain(level))
    for master, count in affected:
        own = problem.by_key[master].domain(level)
        others = len({domain[1] for domain in tally.nodes if domain[0] == level} - {own})
        if count > others + unknown:
            reasons.append("%s takes %d replicas, and there are only %s besides its own" % (
                master, count, _plural(others, level)))
            break
    return "; ".join(reasons) or "no spread avoiding it was found (goal 1 comes first)"


def _goal3(problem: Problem, tally: _Tally, exact: bool) -> str:
    total = problem.masters
    votes = total // 2 + 1
    if total < 3:
        return ("goal 3: with %s, losing any one leaves fewer than the %d votes a failover needs "
                "(it takes 3 masters or more)" % (_plural(total, "master"), votes))
    cap = (total - 1) // 2
    found = []
    for level in LEVELS:
        for domain in sorted(d for d in tally.masters if d[0] == level and tally.masters[d] > cap):
            held = tally.masters[domain]
            found.append("%s %s holds %d of %d masters: losing it leaves %d, short of the %d votes a failover needs (%s)"
                         % (level, domain[1], held, total, total - held, votes,
                            _crowd_reason(problem, tally, domain, cap, exact)))
    return "goal 3: %s" % "; ".join(found) if found else ""


def _crowd_reason(problem: Problem, tally: _Tally, domain: tuple, cap: int, exact: bool) -> str:
    outside = len(problem.nodes) - tally.nodes[domain]
    if outside < problem.masters - cap:
        return "no node lies outside it" if not outside else "only %s outside it" % (
            "1 node lies" if outside == 1 else "%d nodes lie" % outside)
    fixed = sum(1 for key in problem.fixed if domain in problem.by_key[key].domains())
    if fixed > cap:
        return "%d of them are fixed masters" % fixed
    return "moving masters out of it would weaken goal 1 or 2" if exact else "no plan without it was found"


def _goal4(problem: Problem, masters: tuple, replicas: tuple) -> str:
    taken = Counter(master for _replica, master in replicas)
    counts = [taken[master] for master in masters]
    if max(counts) - min(counts) <= 1:
        return ""
    return "goal 4: replica counts range from %d to %d" % (min(counts), max(counts))
