# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The observe layer's data: CLUSTER NODES parsing, observations and ClusterState. Private to redisops.cluster.

Pure code: no I/O and no Ansible imports, so the agent and plain scripts can use it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections import Counter
from types import MappingProxyType

from ._ownership import SlotOwnership, owner_map
from ._slots import SLOT_COUNT, count_slots, format_ranges, parse_slot_token

LABEL_KEYS = ("zone", "rack", "hostname")


class TopologyError(ValueError):
    """Input that cannot describe a node or a cluster (a user or protocol error, never a bug)."""


# --- addresses -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NodeAddress:
    """Where to reach a node, with the inventory labels the user gave it."""

    host: str
    port: int
    labels: tuple = ()  # sorted (name, value) pairs

    @property
    def key(self) -> str:
        return format_address(self.host, self.port)

    @property
    def label_map(self) -> dict:
        return dict(self.labels)


def format_address(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def split_address(text: str) -> tuple:
    """'host:port', '[::1]:port' or 'fe80::1:port' (last colon) -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep:
            raise TopologyError("address %r has an unclosed '['" % text)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise TopologyError("address %r has no port; write it as host:port" % text)
    try:
        port = int(port_text)
    except ValueError:
        raise TopologyError("address %r has no valid port; write it as host:port" % text) from None
    if not host or not 0 < port < 65536:
        raise TopologyError("address %r needs a host and a port between 1 and 65535" % text)
    return host, port


def parse_node_spec(spec, default_port: int = 6379) -> NodeAddress:
    """One item of the `nodes` option: 'host:port' or {host, port, zone, rack, hostname}."""
    if isinstance(spec, str):
        host, port = split_address(spec)
        return NodeAddress(host, port)
    if not isinstance(spec, dict):
        raise TopologyError("each entry of nodes must be 'host:port' or a dict with host and port, got %r" % (spec,))
    unknown = sorted(set(spec) - {"host", "port"} - set(LABEL_KEYS))
    if unknown:
        raise TopologyError("nodes entry %r has unknown keys %s; allowed are host, port, %s"
                            % (spec, ", ".join(unknown), ", ".join(LABEL_KEYS)))
    host = spec.get("host")
    if not host or not isinstance(host, str):
        raise TopologyError("nodes entry %r needs a host" % (spec,))
    try:
        port = int(spec.get("port", default_port))
    except (TypeError, ValueError):
        raise TopologyError("nodes entry %r has a port that is not a number" % (spec,)) from None
    if not 0 < port < 65536:
        raise TopologyError("nodes entry %r has port %d outside 1-65535" % (spec, port))
    labels = tuple(sorted((name, str(spec[name])) for name in LABEL_KEYS if spec.get(name) not in (None, "")))
    return NodeAddress(host, port, labels)


def parse_node_specs(specs, default_port: int = 6379) -> tuple:
    addresses = tuple(parse_node_spec(spec, default_port) for spec in specs)
    seen = Counter(address.key for address in addresses)
    repeated = sorted(key for key, count in seen.items() if count > 1)
    if repeated:
        raise TopologyError("nodes lists %s more than once" % ", ".join(repeated))
    return addresses


# --- CLUSTER NODES -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NodeEntry:
    """One line of CLUSTER NODES: what one node believes about one node."""

    id: str
    host: str  # '' while the node does not know its address
    port: int
    bus_port: int
    hostname: str
    flags: frozenset
    master_id: str  # '' for a master
    ping_sent: int
    pong_received: int
    config_epoch: int
    link_state: str
    slots: tuple = ()  # (first, last) ranges
    migrating: tuple = ()  # (slot, node id) pairs: keys are leaving for that node
    importing: tuple = ()  # (slot, node id) pairs: keys are arriving from that node

    @property
    def myself(self) -> bool:
        return "myself" in self.flags

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags

    @property
    def possibly_failed(self) -> bool:
        return "fail?" in self.flags

    @property
    def addressable(self) -> bool:
        return bool(self.host) and self.port > 0 and not {"noaddr", "handshake"} & self.flags


def _parse_address_field(field: str) -> tuple:
    # ip:port@cport[,hostname[,aux=value...]]; Redis < 4 prints ip:port without the bus port.
    address, _sep, extra = field.partition(",")
    hostname = extra.split(",", 1)[0] if extra else ""
    if "=" in hostname:
        hostname = ""
    address, _at, bus = address.partition("@")
    host, _colon, port = address.rpartition(":")
    port_number = int(port) if port else 0
    return host, port_number, int(bus) if bus else (port_number + 10000 if port_number else 0), hostname


def _parse_open_slot(token: str, migrating: list, importing: list) -> None:
    body = token.strip("[]")
    if "->-" in body:
        slot, node_id = body.split("->-", 1)
        migrating.append((int(slot), node_id))
    elif "-<-" in body:
        slot, node_id = body.split("-<-", 1)
        importing.append((int(slot), node_id))
    else:
        raise ValueError("unknown slot state %r" % token)


@functools.lru_cache(maxsize=32)
def _parse_slot_fields(text: str) -> tuple:
    """(slot ranges, migrating, importing) from the slot fields of a CLUSTER NODES line.

    Remembered by text: every node of a settled cluster prints the same fields for a master, and a fragmented
    slot map has thousands of ranges, so a convergence wait would otherwise parse each master's map once per node
    and per poll. The result is immutable and safe to share.
    """
    slots, migrating, importing = [], [], []
    for token in text.split():
        if token[0] == "[":
            _parse_open_slot(token, migrating, importing)
        else:
            slots.append(parse_slot_token(token))
    slots.sort()
    return tuple(slots), tuple(sorted(migrating)), tuple(sorted(importing))


def parse_cluster_nodes_line(line: str) -> NodeEntry:
    fields = line.split(None, 8)
    if len(fields) < 8:
        raise TopologyError("CLUSTER NODES line has %d fields, expected at least 8: %r" % (len(fields), line))
    try:
        host, port, bus_port, hostname = _parse_address_field(fields[1])
        slots, migrating, importing = _parse_slot_fields(fields[8] if len(fields) > 8 else "")
        flags = frozenset(flag for flag in fields[2].split(",") if flag and flag != "noflags")
        return NodeEntry(
            id=fields[0], host=host, port=port, bus_port=bus_port, hostname=hostname, flags=flags,
            master_id="" if fields[3] == "-" else fields[3],
            ping_sent=int(fields[4]), pong_received=int(fields[5]), config_epoch=int(fields[6]),
            link_state=fields[7],
            slots=slots, migrating=migrating, importing=importing,
        )
    except ValueError as exc:
        raise TopologyError("cannot parse CLUSTER NODES line %r: %s" % (line, exc)) from None


def parse_cluster_nodes(text: str) -> tuple:
    return tuple(parse_cluster_nodes_line(line) for line in text.splitlines() if line.strip())


def parse_info(text: str) -> MappingProxyType:
    """INFO / CLUSTER INFO text -> {field: value}; keyspace lines become {db0: {keys: .., ...}}."""
    fields = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _sep, value = line.partition(":")
        if name.startswith("db") and "=" in value:
            fields[name] = {k: _number(v) for k, _eq, v in (item.partition("=") for item in value.split(","))}
        else:
            fields[name] = _number(value.strip())
    return MappingProxyType(fields)


def server_identity(info: dict) -> tuple:
    """(server name, its version) from INFO server. Valkey reports server_name and valkey_version, and keeps
    redis_version at 7.2.4 for clients that test it; Redis reports only redis_version."""
    if not info.get("redis_version"):
        return None, None
    name = info.get("server_name", "redis")
    return name, str(info.get("%s_version" % name, info["redis_version"]))


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# --- observations and the cluster state ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NodeObservation:
    """What one connection to one node returned (or why it failed)."""

    address: NodeAddress
    reachable: bool
    error: str = ""
    entries: tuple = ()
    cluster_info: MappingProxyType = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    info: MappingProxyType = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    foreign_keys: tuple = ()  # (slot, key count) for slots the node holds keys in but does not serve; deep scan only

    @property
    def myself(self):
        return next((entry for entry in self.entries if entry.myself), None)

    @property
    def unconfigured(self) -> bool:
        """A fresh node: knows only itself and serves no slot."""
        me = self.myself
        return self.reachable and len(self.entries) == 1 and me is not None and not me.slots

    @property
    def keys(self) -> int:
        return sum(db.get("keys", 0) for name, db in self.info.items() if name.startswith("db") and isinstance(db, dict))


def observation_from_replies(address: NodeAddress, nodes_text: str, cluster_info_text: str, info_text: str) -> NodeObservation:
    return NodeObservation(
        address=address, reachable=True, entries=parse_cluster_nodes(nodes_text),
        cluster_info=parse_info(cluster_info_text), info=parse_info(info_text),
    )


def next_addresses(observations) -> tuple:
    """Addresses named in the views so far whose node has not been visited yet (discovery)."""
    visited_keys = {obs.address.key for obs in observations}
    visited_ids = {obs.myself.id for obs in observations if obs.myself is not None}
    found = {}
    for obs in observations:
        for entry in obs.entries:
            if entry.myself or not entry.addressable or entry.id in visited_ids:
                continue
            address = NodeAddress(entry.host, entry.port)
            if address.key not in visited_keys:
                found.setdefault(address.key, address)
    return tuple(found[key] for key in sorted(found))


@dataclasses.dataclass(frozen=True)
class Node:
    """One node, merged from its own view (when reachable) and what the others say about it."""

    entry: NodeEntry
    observation: NodeObservation | None  # None when the node was not reached
    labels: tuple

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def reachable(self) -> bool:
        return self.observation is not None and self.observation.reachable

    @property
    def host(self) -> str:
        return self.entry.host or (self.observation.address.host if self.observation else "")

    @property
    def port(self) -> int:
        return self.entry.port or (self.observation.address.port if self.observation else 0)

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def role(self) -> str:
        return "replica" if self.entry.is_replica else "master"

    @property
    def label_map(self) -> dict:
        return dict(self.labels)

    def describe(self) -> str:
        return "%s (%s)" % (self.address, self.id[:8])


def named_nodes(nodes, name: str) -> list:
    """The nodes a name means: node id, id prefix (8+ characters) or host:port."""
    found = [node for node in nodes if node.id == name or (len(name) >= 8 and node.id.startswith(name))]
    if not found and ":" in name:
        host, port = split_address(name)
        found = [node for node in nodes if node.port == port and host in (node.host, _observed_host(node))]
    return found


def _observed_host(node) -> str:
    return node.observation.address.host if node.observation is not None else ""


@dataclasses.dataclass(frozen=True)
class ClusterState:
    """Every observation made in one pass, in a stable order; all else is derived from it."""

    observations: tuple

    @functools.cached_property
    def reachable(self) -> tuple:
        return tuple(obs for obs in self.observations if obs.reachable)

    @functools.cached_property
    def unreachable(self) -> tuple:
        return tuple(obs for obs in self.observations if not obs.reachable)

    @functools.cached_property
    def configured(self) -> tuple:
        """Reachable observations of nodes that belong to a cluster (not fresh)."""
        return tuple(obs for obs in self.reachable if not obs.unconfigured)

    @functools.cached_property
    def not_configured(self) -> bool:
        return bool(self.reachable) and not self.configured

    @functools.cached_property
    def nodes(self) -> tuple:
        """Every node known to any reachable view, ordered by address."""
        own = {obs.myself.id: obs for obs in self.reachable if obs.myself is not None}
        hearsay = {}
        for obs in self.reachable:
            for entry in obs.entries:
                if not entry.myself and "handshake" not in entry.flags:
                    hearsay.setdefault(entry.id, entry)
        failed_by_address = {obs.address.key: obs for obs in self.unreachable}
        labels_by_address = {obs.address.key: obs.address.labels for obs in self.observations}
        nodes = []
        for node_id in set(own) | set(hearsay):
            if node_id in own:
                obs = own[node_id]
                entry = own[node_id].myself
                labels = obs.address.labels
            else:
                entry = hearsay[node_id]
                key = format_address(entry.host, entry.port)
                obs = failed_by_address.get(key)
                labels = labels_by_address.get(key, ())
            if entry.hostname and "hostname" not in dict(labels):
                labels = tuple(sorted(labels + (("hostname", entry.hostname),)))
            nodes.append(Node(entry=entry, observation=obs, labels=labels))
        return tuple(sorted(nodes, key=lambda node: (node.host, node.port, node.id)))

    @functools.cached_property
    def by_id(self) -> MappingProxyType:
        return MappingProxyType({node.id: node for node in self.nodes})

    @functools.cached_property
    def masters(self) -> tuple:
        return tuple(node for node in self.nodes if node.role == "master")

    @functools.cached_property
    def replicas(self) -> tuple:
        return tuple(node for node in self.nodes if node.role == "replica")

    def replicas_of(self, master_id: str) -> tuple:
        return tuple(node for node in self.replicas if node.entry.master_id == master_id)

    @functools.cached_property
    def views(self) -> tuple:
        """(observer, its slot signature) for every configured reachable node."""
        return tuple((obs, slot_signature(obs.entries)) for obs in self.configured)

    @functools.cached_property
    def majority_view(self):
        """The observation whose slot signature most nodes share (ties: the first observer's), or None."""
        if not self.views:
            return None
        counts = Counter(signature for _obs, signature in self.views)
        best = max(counts.values())
        return next(obs for obs, signature in self.views if counts[signature] == best)

    @functools.cached_property
    def slot_owners(self) -> MappingProxyType:
        """slot -> owner id, as the majority view sees it."""
        return MappingProxyType(owner_map(self.majority_view.entries) if self.majority_view else {})

    @functools.cached_property
    def ownership(self) -> SlotOwnership:
        """Who serves each slot in its own view, and who says what about it (no key counts)."""
        return SlotOwnership(self)

    @functools.cached_property
    def slots_covered(self) -> int:
        """Slots a reachable master serves in its own view; hearsay covers nothing."""
        return len(self.ownership.covered)

    def label(self, node_id: str) -> str:
        node = self.by_id.get(node_id)
        return node.describe() if node else node_id[:8]


def slot_signature(entries) -> frozenset:
    """Who serves which ranges in one view; equal signatures mean equal slot maps (views compare cheaply)."""
    return frozenset((entry.id, entry.slots) for entry in entries if entry.is_master and entry.slots)


def unserved_slots(observation: NodeObservation) -> list:
    """Slots a master neither serves nor imports: where a key would be a stray."""
    expected = {slot for first, last in observation.myself.slots for slot in range(first, last + 1)}
    expected.update(slot for slot, _partner in observation.myself.importing)
    return [slot for slot in range(SLOT_COUNT) if slot not in expected]


def replica_stray_slots(state: ClusterState):
    """For a replica's observation, the slots where a key it holds is a stray: those its master's own view has it
    neither serve nor import. A replica's data mirrors its master's, so a key there is one the master dropped without
    passing the deletion on (Redis before 7.2 on losing a slot to another's claim); clients never read it, and it
    comes back as the replica's own if it is promoted. None for a replica whose link to its master is down: its data
    may be behind."""
    masters = {obs.myself.id: obs for obs in state.configured if obs.myself is not None and obs.myself.is_master}

    def slots_for(observation: NodeObservation) -> list:
        master = masters.get(observation.myself.master_id)
        if master is None or observation.info.get("master_link_status") != "up":
            return []
        return unserved_slots(master)

    return slots_for


def with_key_counts(state: ClusterState, counts) -> ClusterState:
    """The state with stray keys ({node id: {slot: keys}}, as counted) recorded as foreign_keys: a master's in slots
    it does not serve, a replica's in its replica_stray_slots, except those where its master holds stray keys too
    (it has them from the master, and the master's are moved, with their deletion passed on)."""
    replica_slots = replica_stray_slots(state)
    counted = [obs for obs in state.configured if obs.myself is not None and obs.myself.id in counts]
    foreign = {}

    def strays(obs, slots) -> dict:
        slots = set(slots)
        return {slot: n for slot, n in counts[obs.myself.id].items() if slot in slots and n}

    # Masters first: a replica's strays leave out the slots where its master has some.
    for obs in counted:
        if obs.myself.is_master:
            foreign[obs.myself.id] = strays(obs, unserved_slots(obs))
    for obs in counted:
        if obs.myself.is_replica:
            foreign[obs.myself.id] = strays(obs, set(replica_slots(obs)) - set(foreign.get(obs.myself.master_id, ())))
    observations = []
    for obs in state.observations:
        if obs.myself is not None and obs.myself.id in foreign:
            obs = dataclasses.replace(obs, foreign_keys=tuple(sorted(foreign[obs.myself.id].items())))
        observations.append(obs)
    return ClusterState(observations=tuple(observations))


def view_signature(observation: NodeObservation) -> frozenset:
    """What a node believes about roles and slot owners: the same on every node of a converged cluster."""
    return frozenset((entry.id, entry.is_replica, entry.master_id, entry.slots)
                     for entry in observation.entries if "handshake" not in entry.flags)


def _not_answering(observations):
    down = [obs for obs in observations if not obs.reachable]
    if down:
        return "cannot reach %s" % ", ".join("%s (%s)" % (obs.address.key, obs.error) for obs in down)
    return None


def _broken_links(observations) -> str:
    links = ["%s cannot reach %s:%d bus port %d" % (obs.address.key, entry.host, entry.port, entry.bus_port)
             for obs in observations for entry in obs.entries
             if not entry.myself and (entry.link_state != "connected" or "handshake" in entry.flags)]
    return "; ".join(sorted(links))


def unsettled(observations):
    """What keeps these nodes from being settled (all answer, agree on roles and slots, report cluster_state:ok, and
    flag no node failing or in handshake), naming the nodes; None once they are."""
    problem = _not_answering(observations)
    if problem:
        return problem
    signatures = Counter(view_signature(obs) for obs in observations)
    if len(signatures) > 1:
        majority = signatures.most_common(1)[0][0]
        odd = [obs.address.key for obs in observations if view_signature(obs) != majority]
        links = _broken_links(observations)
        return "%s disagree with the others about roles or slots%s" % (", ".join(odd), "; " + links if links else "")
    not_ok = [obs.address.key for obs in observations if obs.cluster_info.get("cluster_state") != "ok"]
    if not_ok:
        return "cluster_state is not ok on %s" % ", ".join(not_ok)
    # A node that was down before the change began (and is not waited on) stays flagged: only the nodes taking
    # part must be seen well by all.
    taking_part = {obs.myself.id for obs in observations if obs.myself is not None}
    flagged = sorted({"%s:%d" % (entry.host, entry.port) for obs in observations for entry in obs.entries
                      if "handshake" in entry.flags or ({"fail", "fail?"} & entry.flags and entry.id in taking_part)})
    if flagged:
        return "%s still flagged failing or in handshake" % ", ".join(flagged)
    return None


def state_id(state: ClusterState) -> str:
    """A digest of the topology a plan is made from; equal digests mean the same roles, slots and open slots."""
    parts = sorted("%s %s %s %s %s %s %s %d" % (node.id, node.address, node.role, node.entry.master_id,
                                                format_ranges(node.entry.slots), node.entry.migrating,
                                                node.entry.importing, node.entry.config_epoch)
                   for node in state.nodes)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def topology_summary(state: ClusterState) -> dict:
    """Masters with their slots and replicas, and the nodes with no role in the cluster yet: before/after views."""
    masters = []
    for node in state.masters:
        if node.entry.slots or state.replicas_of(node.id):
            masters.append({"node": node.address, "id": node.id, "slots": format_ranges(node.entry.slots),
                            "slot_count": count_slots(node.entry.slots),
                            "replicas": sorted(r.address for r in state.replicas_of(node.id))})
    idle = sorted(node.address for node in state.masters if not node.entry.slots and not state.replicas_of(node.id))
    return {"masters": masters, "idle_nodes": idle, "slots_covered": state.slots_covered}
