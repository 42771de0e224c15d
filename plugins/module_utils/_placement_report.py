# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report of the placement goals a plan does not meet, each with its reason. Private to redisops.cluster.

Pure code for _placement: one message per unmet goal (see the goals in _placement), saying which domains force
it, what fixed input holds it, or that no better plan was found.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from ._placement_problem import LEVELS, Problem


def unmet_goals(problem: Problem, masters: tuple, replicas: tuple, shared: tuple, kept: frozenset, exact: bool) -> tuple:
    """One message per goal the plan does not meet; kept holds the pairs kept from fixed_replicas."""
    tally = _tally(problem, masters, replicas)
    unmet = (_goal1(problem, tally, shared, kept, exact), _goal2(problem, tally, masters, replicas),
             _goal3(problem, tally, exact), _goal4(problem, masters, replicas))
    return tuple(message for message in unmet if message)


@dataclasses.dataclass(frozen=True)
class _Tally:
    """Per domain: candidates, masters, replicas, and replica places (replicas its masters take)."""

    nodes: Counter
    masters: Counter
    replicas: Counter
    places: Counter


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
