# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the reconcile playbook does next, decided from the agents' facts alone. Private to redisops.cluster.

Pure code: no I/O and no Ansible imports. The input is each inventory host's facts file (the agent's JSON,
ansible_local.redis_cluster) with the instances the inventory gives it; the output is a Reconciliation: the hosts
whose facts are refused, the decisions with their reasons, notes, and the record of the observed topology that
the playbook appends to the cluster's history.

Decisions, in the order the playbook carries them out:
- start: instances the agents could not read are started again (redis_node on their host). A master whose replica
  took over comes back as that replica's replica; Redis does that itself.
- create: no reporting instance is in a cluster and at least min_nodes report: form one from those that report.
- fix: what redis_cluster_fix owns, seen in the instances' own views: open slots, slots no master claims (nor an
  instance being started), slots two masters claim, views that disagree, nodes flagged failing. Failing nodes that
  no inventory instance is (ghosts) are forgotten, but only in a run that starts nothing: a restarted instance
  may still be flagged when fix looks, and a forgotten one could not rejoin.
- add: reporting instances that are in no cluster join it: as a replica of a master with fewer than `replicas`
  replicas where there is one (the one sharing the fewest fault domains with it, then the fewest replicas), else
  as a master.
- rebalance: some master (those that will be after the additions) is further from its equal share than
  `threshold` percent, as redis_cluster_rebalance measures it.
Any stale or missing facts file refuses the whole run: a decision from an old picture could undo a newer one.
"""

from __future__ import annotations

import dataclasses
import datetime

from ._membership import _shared_weight
from ._placement import Candidate
from ._shares import DEFAULT_THRESHOLD, deviation, over_threshold, targets
from ._slots import SLOT_COUNT, count_slots, format_ranges, ranges_from_slots, slots_from_ranges, summarize_ranges
from ._topology import format_address

SCHEMA = 1
STALE_INTERVALS = 3
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

START = "start"
CREATE = "create"
FIX = "fix"
ADD = "add"
REBALANCE = "rebalance"
RESTORE_PLACEMENT = "restore_placement"


class ReconcileError(ValueError):
    """Input the decisions cannot be made from (the caller's error); the message says what to change."""


@dataclasses.dataclass(frozen=True)
class InventoryInstance:
    """An instance the inventory gives a host: its address and fault-domain labels."""

    host: str  # the inventory host
    address: str  # its IP address or name, as the other nodes reach it
    port: int
    hostname: str = ""
    rack: str = ""
    zone: str = ""

    @property
    def key(self) -> str:
        return format_address(self.address, self.port)

    @property
    def candidate(self) -> Candidate:
        return Candidate(key=self.key, host=self.hostname or self.address, rack=self.rack, zone=self.zone)

    @property
    def entry(self) -> dict:
        """The instance as an entry of the modules' nodes option."""
        labels = {"hostname": self.hostname, "rack": self.rack, "zone": self.zone}
        return dict({label: value for label, value in labels.items() if value}, host=self.address, port=self.port)


@dataclasses.dataclass(frozen=True)
class HostReport:
    """An inventory host, its instances, and its facts file as read (None when it has none)."""

    name: str
    instances: tuple  # InventoryInstance
    facts: dict | None


@dataclasses.dataclass(frozen=True)
class Settings:
    min_nodes: int
    replicas: int = 1
    threshold: float = DEFAULT_THRESHOLD
    stale_intervals: int = STALE_INTERVALS


@dataclasses.dataclass(frozen=True)
class Instance:
    """One reported instance: its inventory entry and the agent's entry (node and view: the last good ones)."""

    inventory: InventoryInstance
    node: dict | None
    cluster: dict | None
    error: str | None

    @property
    def key(self) -> str:
        return self.inventory.key

    @property
    def live(self) -> bool:
        return self.error is None and self.node is not None and self.cluster is not None

    @property
    def was_member(self) -> bool:
        """In a cluster when last read: knew another node, served slots or replicated."""
        return bool(self.node and self.cluster and ((self.cluster.get("known_nodes") or 0) > 1
                                                    or self.node.get("slot_count") or self.node.get("role") == "replica"))

    @property
    def member(self) -> bool:
        return self.live and self.was_member

    @property
    def node_id(self) -> str | None:
        return self.node.get("id") if self.node else None

    @property
    def role(self) -> str | None:
        return self.node.get("role") if self.node else None

    @property
    def slots(self) -> tuple:
        return tuple((int(first), int(last)) for first, last in (self.node or {}).get("slots") or ())


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    host: str | None = None  # start: the inventory host whose instances start
    nodes: tuple = ()  # create: every node; start: the instances; add: the node
    node_ids: tuple = ()  # start: the ids the instances had when last read
    entries: tuple = ()  # create: the nodes option of redis_cluster_create (addresses and labels)
    role: str | None = None  # add
    master: str | None = None  # add, as a replica: the master's address
    forget_failed: bool = False  # fix

    def as_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "host": self.host, "nodes": list(self.nodes),
                "node_ids": list(self.node_ids), "entries": list(self.entries), "role": self.role,
                "master": self.master, "forget_failed": self.forget_failed}

    @property
    def line(self) -> str:
        return "%s: %s" % (self.action, self.reason)


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    refused: tuple  # one line per host whose facts cannot be used
    decisions: tuple  # Decision, in the order to carry them out
    notes: tuple  # what was seen and left alone, with why
    record: dict  # the observed topology, for the history

    def as_dict(self) -> dict:
        return {"refused": list(self.refused), "decisions": [decision.as_dict() for decision in self.decisions],
                "lines": [decision.line for decision in self.decisions], "notes": list(self.notes),
                "actions": sorted({decision.action for decision in self.decisions}), "record": self.record}


# --- time and staleness ------------------------------------------------------------------------------------

def parse_time(text) -> datetime.datetime:
    """An agent's or the controller's UTC time, as the agent writes it (2026-11-30T06:03:52Z)."""
    try:
        return datetime.datetime.strptime(str(text), TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ReconcileError("%r is not a UTC time of the form 2026-11-30T06:03:52Z" % (text,)) from None


def refusal(report: HostReport, now: datetime.datetime, stale_intervals: int) -> str | None:
    """Why the host's facts cannot be decided from, or None when they are fresh."""
    facts = report.facts
    if not facts:
        return ("%s: no facts (is the host reachable, is redis_cluster_agent deployed there and has it run?)"
                % report.name)
    if facts.get("schema") != SCHEMA:
        return "%s: facts of schema %r, this collection reads schema %d" % (report.name, facts.get("schema"), SCHEMA)
    try:
        collected = parse_time(facts.get("collected_at"))
        interval = int(facts.get("interval") or 0)
    except (ReconcileError, TypeError, ValueError):
        interval = 0
    if interval <= 0:
        return "%s: facts without a readable collected_at and interval" % report.name
    age = int((now - collected).total_seconds())
    limit = stale_intervals * interval
    if age > limit:
        return "%s: facts collected %s are %d s old, more than %d intervals of %d s" % (
            report.name, facts["collected_at"], age, stale_intervals, interval)
    return None


# --- the instances -----------------------------------------------------------------------------------------

def instances_of(reports) -> tuple:
    """Every inventory instance with what its host's agent reports of it; notes on those it does not report."""
    found, notes = [], []
    for report in reports:
        reported = (report.facts or {}).get("instances") or {}
        for entry in report.instances:
            agent = reported.get(str(entry.port))
            if agent is None:
                notes.append("%s on %s: its agent does not report port %d; no decision about it"
                             % (entry.key, report.name, entry.port))
                continue
            found.append(Instance(inventory=entry, node=agent.get("node"), cluster=agent.get("cluster"),
                                  error=agent.get("error") or (None if agent.get("node") else "never read")))
    return tuple(sorted(found, key=lambda instance: instance.key)), tuple(notes)


def _live_masters(instances) -> list:
    return [instance for instance in instances if instance.member and instance.role == "master"]


def _claims(instances) -> dict:
    """Slot -> the ids of live masters that claim it in their own views."""
    claims = {}
    for instance in _live_masters(instances):
        for slot in slots_from_ranges(instance.slots):
            claims.setdefault(slot, []).append(instance.node_id)
    return claims


def _returning_masters(down, claims: dict) -> list:
    """Down instances that come back as masters: they served slots when last read, and no live master has taken
    any of them over (else Redis makes them replicas of the one that did)."""
    return [instance for instance in down
            if instance.role == "master" and instance.slots
            and not any(slot in claims for slot in slots_from_ranges(instance.slots))]


# --- decisions ---------------------------------------------------------------------------------------------

def decide(reports, now, settings: Settings) -> Reconciliation:
    """The decisions for a cluster, from its hosts' facts (reports: HostReport) at controller time now."""
    now = parse_time(now) if isinstance(now, str) else now
    if settings.min_nodes < 1 or settings.replicas < 0 or settings.stale_intervals < 1:
        raise ReconcileError("min_nodes and stale_intervals must be 1 or more and replicas 0 or more, got %r"
                             % (settings,))
    reports = tuple(reports)
    refused = tuple(line for line in (refusal(report, now, settings.stale_intervals) for report in reports) if line)
    instances, notes = instances_of(reports)
    if refused:
        return _reconciliation(reports, instances, refused=refused)
    down = [instance for instance in instances if not instance.live]
    decisions = _starts(down)
    if not any(instance.was_member for instance in instances):
        created, waiting = _create(instances, settings.min_nodes)
        return _reconciliation(reports, instances, decisions=decisions + created, notes=notes + waiting)
    if not any(instance.member for instance in instances):
        # Every member is down: a cluster exists, and only its own instances can bring it back.
        return _reconciliation(reports, instances, decisions=decisions, notes=notes + (
            "no member of the cluster answers its agent: nothing but starting them is decided",))
    claims = _claims(instances)
    decisions += _fix(instances, down, claims)
    additions = _additions(instances, down, claims, settings.replicas)
    decisions += additions
    decisions += _rebalance(instances, down, claims, additions, settings.threshold)
    decisions += _restore_placement(instances, down, claims)
    return _reconciliation(reports, instances, decisions=decisions, notes=notes)


def _reconciliation(reports, instances, refused=(), decisions=(), notes=()) -> Reconciliation:
    record = dict(topology_record(reports, instances), refused=list(refused),
                  decisions=[decision.line for decision in decisions])
    return Reconciliation(refused=tuple(refused), decisions=tuple(decisions), notes=tuple(notes), record=record)


def _starts(down) -> list:
    by_host = {}
    for instance in down:
        by_host.setdefault(instance.inventory.host, []).append(instance)
    return [_start(host, group) for host, group in sorted(by_host.items())]


def _start(host: str, group: list) -> Decision:
    errors = ", ".join("%s (%s)" % (instance.key, instance.error) for instance in group)
    reason = "%s: its agent cannot read %s; start %s again (redis_node)" % (
        host, errors, "it" if len(group) == 1 else "them")
    return Decision(START, reason, host=host, nodes=tuple(instance.key for instance in group),
                    node_ids=tuple(instance.node_id for instance in group if instance.node_id))


def _create(instances, min_nodes: int) -> tuple:
    live = [instance for instance in instances if instance.live]
    if len(live) < min_nodes:
        return [], ("no cluster yet: %d instance(s) report, %d needed to create it (min_nodes)"
                    % (len(live), min_nodes),)
    reason = "no reporting instance is in a cluster and %d report (min_nodes %d): create the cluster from %s" % (
        len(live), min_nodes, ", ".join(instance.key for instance in live))
    return [Decision(CREATE, reason, nodes=tuple(instance.key for instance in live),
                     entries=tuple(instance.inventory.entry for instance in live))], ()


def _fix(instances, down, claims: dict) -> list:
    reasons = _open_slots(instances) + _unclaimed(down, claims) + _contested(instances, claims) \
        + _disagreeing(instances)
    failing, ghosts = _failing(instances)
    reasons += failing
    forget = bool(ghosts) and not down
    if ghosts:
        reasons.append("failing node(s) no inventory instance is: %s (%s)" % (
            ", ".join(ghosts), "forget them" if forget else "left until the started instances are back"))
    if not reasons:
        return []
    return [Decision(FIX, "; ".join(reasons), forget_failed=forget)]


def _open_slots(instances) -> list:
    return ["%s has slot(s) %s open" % (instance.key, summarize_ranges(ranges_from_slots(instance.cluster["open_slots"])))
            for instance in instances if instance.member and instance.cluster.get("open_slots")]


def _unclaimed(down, claims: dict) -> list:
    coming_back = {slot for instance in _returning_masters(down, claims) for slot in slots_from_ranges(instance.slots)}
    unclaimed = [slot for slot in range(SLOT_COUNT) if slot not in claims and slot not in coming_back]
    if not unclaimed:
        return []
    return ["%d slot(s) no master claims: %s" % (len(unclaimed), summarize_ranges(ranges_from_slots(unclaimed)))]


def _contested(instances, claims: dict) -> list:
    contested = [slot for slot, owners in claims.items() if len(owners) > 1]
    if not contested:
        return []
    keys = {instance.node_id: instance.key for instance in instances}
    owners = sorted({keys[owner] for slot in contested for owner in claims[slot]})
    return ["slot(s) %s claimed by more than one master (%s)" % (
        summarize_ranges(ranges_from_slots(contested)), ", ".join(owners))]


def _disagreeing(instances) -> list:
    """Members whose views of roles, slots and epochs differ (open slots differ anyway: reported apart)."""
    views = {}
    for instance in instances:
        if instance.member and not instance.cluster.get("open_slots"):
            views.setdefault(instance.cluster.get("view_id"), []).append(instance.key)
    if len(views) < 2:
        return []
    groups = sorted(sorted(keys) for keys in views.values())
    return ["the views differ (%s)" % " | ".join(", ".join(group) for group in groups)]


def _failing(instances) -> tuple:
    """(reasons for live instances that some view flags, ids of flagged nodes that no inventory instance is).
    Flagged instances that are down are the start decision's."""
    ours = {instance.node_id: instance for instance in instances if instance.node_id}
    flagged = {}
    for instance in instances:
        if instance.member:
            for entry in instance.cluster.get("failing_nodes") or ():
                flagged.setdefault(entry["id"], set()).add(instance.key)
    reasons, ghosts = [], []
    for node_id, observers in sorted(flagged.items()):
        mine = ours.get(node_id)
        if mine is None:
            ghosts.append(node_id[:8])
        elif mine.live:
            reasons.append("%s answers its agent but %s flag it failing" % (mine.key, ", ".join(sorted(observers))))
    return reasons, ghosts


def _replica_counts(instances, down, claims: dict) -> dict:
    """Master id -> its replicas, live or being started (a master that lost its slots comes back as the replica
    of the master that took them)."""
    counts = {instance.node_id: 0 for instance in _live_masters(instances) if instance.slots}
    for instance in instances:
        if instance.role == "replica" and instance.node.get("master_id") in counts:
            counts[instance.node["master_id"]] += 1
    returning = {instance.node_id for instance in _returning_masters(down, claims)}
    for instance in down:
        if instance.role == "master" and instance.node_id not in returning:
            successor = next((claims[slot][0] for slot in slots_from_ranges(instance.slots) if slot in claims), None)
            if successor in counts:
                counts[successor] += 1
    return counts


def _additions(instances, down, claims: dict, replicas: int) -> list:
    joining = [instance for instance in instances if instance.live and not instance.member]
    if not joining:
        return []
    counts = _replica_counts(instances, down, claims)
    masters = {instance.node_id: instance for instance in _live_masters(instances) if instance.node_id in counts}
    decisions = []
    for instance in joining:
        short = [masters[node_id] for node_id in sorted(counts) if counts[node_id] < replicas]
        if not short:
            decisions.append(Decision(ADD, "%s reports but is in no cluster, and every master has %d replica(s): "
                                           "add it as a master" % (instance.key, replicas),
                                      nodes=(instance.key,), role="master"))
            continue
        mine = instance.inventory.candidate
        master = min(short, key=lambda m: (_shared_weight(mine, m.inventory.candidate), counts[m.node_id], m.key))
        decisions.append(Decision(ADD, "%s reports but is in no cluster, and %s has %d replica(s) of %d: add it as "
                                       "its replica" % (instance.key, master.key, counts[master.node_id], replicas),
                                  nodes=(instance.key,), role="replica", master=master.key))
        counts[master.node_id] += 1
    return decisions


def _holdings(instances, down, claims: dict) -> dict:
    """Master -> slot ranges, as the masters will be: live masters (a slot two claim goes to the highest config
    epoch, as the fix decides) and masters coming back with their slots."""
    masters = _live_masters(instances) + _returning_masters(down, claims)
    masters.sort(key=lambda instance: (-(instance.node.get("config_epoch") or 0), instance.node_id))
    taken, holdings = set(), {}
    for instance in masters:
        mine = [slot for slot in slots_from_ranges(instance.slots) if slot not in taken]
        taken.update(mine)
        holdings[instance.key] = ranges_from_slots(mine)
    return holdings


def _rebalance(instances, down, claims: dict, additions, threshold: float) -> list:
    holdings = _holdings(instances, down, claims)
    if not holdings:
        return []
    for decision in additions:
        if decision.role == "master":
            holdings[decision.nodes[0]] = ()
    goal = targets(holdings)
    over = over_threshold(holdings, goal, threshold)
    if not over:
        return []
    have = {key: count_slots(ranges) for key, ranges in holdings.items()}
    worst = ", ".join("%s holds %d, its share is %d (%.1f%%)" % (key, have[key], goal[key], deviation(have[key], goal[key]))
                      for key in over)
    return [Decision(REBALANCE, "beyond the threshold of %g%%: %s" % (threshold, worst))]


def _restore_placement(instances, down, claims: dict) -> list:
    """Masters crowded into one zone, or a dead master whose replica took over and which comes back as a replica:
    after a failover, promoting the right replicas (redis_cluster_failover, placement restore) spreads the masters
    again; the module plans nothing when no promotion lowers its placement cost."""
    zones = {instance.inventory.zone for instance in instances if instance.member and instance.inventory.zone}
    serving = [instance.inventory.zone for instance in _live_masters(instances) if instance.slots]
    reasons = []
    if len(zones) > 1 and serving:
        even = -(-len(serving) // len(zones))
        reasons += ["zone %s holds %d of the %d masters that serve slots (an even spread is %d at most)"
                    % (zone, serving.count(zone), len(serving), even)
                    for zone in sorted({zone for zone in serving if serving.count(zone) > even})]
    returning = {instance.key for instance in _returning_masters(down, claims)}
    replaced = sorted(instance.key for instance in down
                      if instance.role == "master" and instance.slots and instance.key not in returning)
    if replaced:
        reasons.append("%s served slots that a replica took over; it comes back as a replica"
                       % ", ".join(replaced))
    if not reasons:
        return []
    return [Decision(RESTORE_PLACEMENT, "; ".join(reasons)
                     + ": fail over where promoting a synced replica spreads the masters (redis_cluster_failover)")]


# --- the history record ------------------------------------------------------------------------------------

# The node fields the history keeps: the topology and its health, nothing of the connection.
_NODE_FIELDS = ("id", "role", "master_id", "flags", "config_epoch", "slot_count", "migrating", "importing", "keys")
_VIEW_FIELDS = ("state", "known_nodes", "current_epoch", "open_slots", "view_id")


def topology_record(reports, instances) -> dict:
    """The observed topology, each host with its collection time: one line of the cluster's history. Built from
    named fields only, so nothing the agent may add later (or a password) reaches the history."""
    hosts = {}
    for report in reports:
        facts = report.facts or {}
        hosts[report.name] = {"collected_at": facts.get("collected_at"), "interval": facts.get("interval")}
    nodes = []
    for instance in instances:
        node = instance.node or {}
        entry = {"node": instance.key, "host": instance.inventory.host, "zone": instance.inventory.zone,
                 "error": instance.error}
        entry.update({field: node.get(field) for field in _NODE_FIELDS})
        entry["slots"] = format_ranges(instance.slots) if instance.slots else ""
        entry["view"] = {field: (instance.cluster or {}).get(field) for field in _VIEW_FIELDS}
        entry["failing"] = sorted(flagged["id"] for flagged in (instance.cluster or {}).get("failing_nodes") or ())
        nodes.append(entry)
    times = [host["collected_at"] for host in hosts.values() if host["collected_at"]]
    return {"collected_at": max(times) if times else None, "hosts": hosts, "nodes": nodes}
