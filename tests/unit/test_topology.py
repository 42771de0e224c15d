# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CLUSTER NODES parsing and health findings, on outputs captured from real Redis 7 clusters (tests/unit/data)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.redisops.cluster.plugins.module_utils._facts import cluster_facts
from ansible_collections.redisops.cluster.plugins.module_utils._findings import assess
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (
    ClusterState, NodeAddress, NodeObservation, TopologyError, next_addresses, observation_from_replies,
    parse_cluster_nodes, parse_cluster_nodes_line, parse_info, parse_node_spec, parse_node_specs, server_identity,
    split_address,
)
from ansible_collections.redisops.cluster.plugins.module_utils._planner import PlanError, refuse_unsound

DATA = os.path.join(os.path.dirname(__file__), "data")
OK_INFO = "cluster_state:ok\r\ncluster_known_nodes:6\r\n"


def read(name: str) -> str:
    with open(os.path.join(DATA, name)) as handle:
        return handle.read()


HEALTHY_TEXT = read("healthy_hostnames.txt")


def by_port(entries) -> dict:
    return {entry.port: entry for entry in entries}


def observe(name: str, cluster_info: str = OK_INFO, info: str = "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"):
    """An observation of the node whose myself line is in the captured output."""
    text = read(name)
    me = next(entry for entry in parse_cluster_nodes(text) if entry.myself)
    return observation_from_replies(NodeAddress(me.host or "127.0.0.1", me.port), text, cluster_info, info)


def view_text(text: str, node_id: str) -> str:
    """A captured CLUSTER NODES output as node_id prints it: the myself flag moved to its line."""
    lines = []
    for line in text.splitlines():
        fields = line.split()
        flags = [flag for flag in fields[2].split(",") if flag != "myself"]
        if fields[0] == node_id:
            flags.insert(0, "myself")
        fields[2] = ",".join(flags)
        lines.append(" ".join(fields))
    return "\n".join(lines)


def cluster_from(text: str, cluster_info: str = OK_INFO, down=()) -> ClusterState:
    """Every node's view, derived from one captured view; nodes in down (or flagged fail) unreachable."""
    observations = []
    for entry in parse_cluster_nodes(text):
        address = NodeAddress(entry.host or "127.0.0.1", entry.port)
        if entry.id in down or entry.failed:
            observations.append(NodeObservation(address, reachable=False, error="Connection refused"))
        else:
            observations.append(observation_from_replies(address, view_text(text, entry.id), cluster_info, ""))
    return ClusterState(tuple(observations))


def replaced(state: ClusterState, *observations) -> ClusterState:
    """The state with the observations of the same nodes swapped for these."""
    ids = {obs.myself.id for obs in observations}
    return ClusterState(tuple(observations) + tuple(obs for obs in state.observations
                                                    if obs.myself is None or obs.myself.id not in ids))


def kinds(findings) -> list:
    return [finding.kind for finding in findings]


# --- parsing -------------------------------------------------------------------------------------

def test_fresh_node_has_no_address_yet():
    (entry,) = parse_cluster_nodes(read("fresh_node.txt"))
    assert entry.myself and entry.is_master
    formed = next(e for e in parse_cluster_nodes(read("healthy_hostnames.txt")) if e.myself)
    assert entry.id == formed.id and entry.host == "" and formed.host == "127.0.0.1"
    assert (entry.port, entry.bus_port) == (formed.port, formed.bus_port) and entry.bus_port != entry.port + 10000
    assert entry.slots == () and entry.master_id == "" and entry.config_epoch == 0
    assert not entry.addressable


def test_healthy_cluster_with_hostnames():
    entries = parse_cluster_nodes(read("healthy_hostnames.txt"))
    assert len(entries) == 6
    masters = [entry for entry in entries if entry.is_master]
    replicas = [entry for entry in entries if entry.is_replica]
    assert len(masters) == 3 and len(replicas) == 3
    assert sorted(entry.slots for entry in masters) == [((0, 5460),), ((5461, 10922),), ((10923, 16383),)]
    me = next(entry for entry in entries if entry.myself)
    assert me.hostname == "host-0.example" and me.host == "127.0.0.1" and me.bus_port > 0
    assert {entry.master_id for entry in replicas} == {entry.id for entry in masters}
    assert all(entry.link_state == "connected" for entry in entries)


def test_migrating_and_importing_markers():
    source = next(entry for entry in parse_cluster_nodes(read("migrating_source.txt")) if entry.myself)
    target = next(entry for entry in parse_cluster_nodes(read("importing_target.txt")) if entry.myself)
    assert source.slots == ((0, 5460),)
    assert source.migrating == ((100, target.id), (102, target.id))
    assert target.importing == ((100, source.id), (101, source.id))
    assert len(target.slots) == 1 and not target.slots[0][0] <= 100 <= target.slots[0][1]


def test_fail_flags():
    pfail = [entry for entry in parse_cluster_nodes(read("master_pfail.txt")) if entry.possibly_failed]
    fail = [entry for entry in parse_cluster_nodes(read("master_fail.txt")) if entry.failed]
    assert len(pfail) == 1 and len(fail) == 1 and pfail[0].id == fail[0].id
    assert fail[0].link_state == "disconnected" and fail[0].slots == ((10923, 16383),)
    assert not fail[0].possibly_failed


def test_handshake_entry_is_not_addressable():
    handshake = [entry for entry in parse_cluster_nodes(read("handshake.txt")) if "handshake" in entry.flags]
    assert len(handshake) == 1 and not handshake[0].addressable and handshake[0].hostname == ""


@pytest.mark.parametrize("line, host, port, bus, hostname, flags", [
    ("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :0@0 master,fail,noaddr - 1 1 5 disconnected",
     "", 0, 0, "", {"master", "fail", "noaddr"}),
    ("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca ::1:7000@17000 myself,master,nofailover - 0 0 1 connected 0-10",
     "::1", 7000, 17000, "", {"myself", "master", "nofailover"}),
    ("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.1:7000@17000,node-a,shard-id=abc slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 0 1 connected",
     "10.0.0.1", 7000, 17000, "node-a", {"slave"}),
    ("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.1:7000 noflags - 0 0 1 connected",
     "10.0.0.1", 7000, 17000, "", set()),
])
def test_address_and_flag_forms(line, host, port, bus, hostname, flags):
    entry = parse_cluster_nodes_line(line)
    assert (entry.host, entry.port, entry.bus_port, entry.hostname, set(entry.flags)) == (host, port, bus, hostname, flags)


@pytest.mark.parametrize("line", [
    "too few fields",
    "e7d1 1.2.3.4:1@2 master - 0 0 x connected",
    "e7d1 1.2.3.4:1@2 master - 0 0 1 connected 16384",
    "e7d1 1.2.3.4:1@2 master - 0 0 1 connected [5-?-abc]",
])
def test_malformed_lines_raise_topology_error(line):
    with pytest.raises(TopologyError):
        parse_cluster_nodes_line(line)


def test_server_identity_names_valkey_by_its_own_version():
    valkey = parse_info("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.1\r\n")
    assert server_identity(valkey) == ("valkey", "8.1.1")
    assert server_identity(parse_info("# Server\r\nredis_version:8.0.2\r\n")) == ("redis", "8.0.2")
    assert server_identity({}) == (None, None)


def test_parse_info_keyspace_and_numbers():
    info = parse_info("# Server\r\nredis_version:7.0.15\r\nused_memory:1024\r\n# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\n")
    assert info["redis_version"] == "7.0.15" and info["used_memory"] == 1024
    assert info["db0"] == {"keys": 12, "expires": 1, "avg_ttl": 0}


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.1:7000", ("10.0.0.1", 7000)), ("[::1]:7000", ("::1", 7000)), ("fe80::1:7000", ("fe80::1", 7000)),
    ("redis-a.example:6380", ("redis-a.example", 6380)),
])
def test_split_address(text, expected):
    assert split_address(text) == expected


@pytest.mark.parametrize("spec, message", [
    ("nohost", "has no port"), ("host:0", "between 1 and 65535"), ("host:x", "no valid port"),
    ({"port": 1}, "needs a host"), ({"host": "a", "port": "x"}, "not a number"),
    ({"host": "a", "colour": "red"}, "unknown keys colour"), (5, "must be 'host:port'"),
])
def test_bad_node_specs_name_the_problem(spec, message):
    with pytest.raises(TopologyError, match=message):
        parse_node_spec(spec)


def test_node_spec_labels_and_duplicates():
    address = parse_node_spec({"host": "a", "zone": "z1", "rack": "", "hostname": "h1"}, default_port=6380)
    assert address.port == 6380 and address.label_map == {"zone": "z1", "hostname": "h1"}
    with pytest.raises(TopologyError, match="more than once"):
        parse_node_specs(["a:1", {"host": "a", "port": 1}])


# --- state and findings ----------------------------------------------------------------------------

def test_healthy_state_has_no_findings():
    state = cluster_from(read("healthy_hostnames.txt"))
    findings = assess(state)
    assert findings == ()
    facts = cluster_facts(state, findings)
    assert facts["state"] == "ok" and facts["slots_covered"] == 16384
    assert facts["masters"] == 3 and facts["replicas"] == 3
    assert {node["hostname"] for node in facts["nodes"]} == {"host-%d.example" % i for i in range(6)}
    assert [node["reachable"] for node in facts["nodes"]].count(True) == 6


def test_slots_of_masters_not_read_are_not_counted_served():
    """A view names owners; only an owner's own view says it serves them."""
    state = ClusterState((observe("healthy_hostnames.txt"),))
    assert state.slots_covered == 5461
    (uncovered,) = [f for f in assess(state) if f.kind == "uncovered_slots"]
    assert uncovered.slots == ((5461, 16383),) and "names 127.0.0.1:40005" in uncovered.message


def test_discovery_names_every_other_node_once():
    observation = observe("healthy_hostnames.txt")
    pending = next_addresses((observation,))
    assert len(pending) == 5 and observation.address.key not in {address.key for address in pending}


def test_fresh_nodes_are_not_configured():
    state = ClusterState((observe("fresh_node.txt", cluster_info="cluster_state:fail\r\ncluster_known_nodes:1\r\n"),))
    assert state.not_configured
    assert cluster_facts(state, assess(state))["state"] == "not_configured"


def test_open_slot_names_both_nodes():
    state = replaced(cluster_from(read("healthy_hostnames.txt")), observe("migrating_source.txt"),
                     observe("importing_target.txt"))
    source, target = (obs.myself.id for obs in state.observations[:2])
    open_slots = [f for f in assess(state) if f.kind == "open_slot"]
    # 100 open on both sides, 102 only migrating, 101 only importing: three cases, each named.
    assert sorted((f.slots, f.nodes) for f in open_slots) == [
        (((100, 100),), (source, target)), (((101, 101),), (source, target)), (((102, 102),), (source, target)),
    ]
    messages = {f.slots[0][0]: f.message for f in open_slots}
    assert "is migrating them and" in messages[100]
    assert "is importing them, but" in messages[101] and "is not migrating" in messages[101]
    assert "is migrating them, but" in messages[102] and "is not importing" in messages[102]
    assert all(source[:8] in f.message and target[:8] in f.message for f in open_slots)
    assert cluster_facts(state, assess(state))["state"] == "degraded"


def test_failed_master_is_reported():
    state = ClusterState((observe("master_fail.txt", cluster_info="cluster_state:fail\r\n"),))
    findings = assess(state)
    failing = [f for f in findings if f.kind == "node_failing"]
    assert len(failing) == 1 and failing[0].severity == "critical" and "fail by" in failing[0].message
    assert cluster_facts(state, findings)["state"] == "failed"


def test_after_failover_the_promoted_master_has_no_replica():
    state = cluster_from(read("after_failover.txt"))
    findings = assess(state)
    promoted = next(node for node in state.masters if (10923, 16383) in node.entry.slots)
    assert [f.nodes for f in findings if f.kind == "master_without_replica"] == [(promoted.id,)]
    assert "node_failing" in kinds(findings)
    assert cluster_facts(state, findings)["state"] == "degraded"


def test_an_owner_that_dropped_its_slots_leaves_them_uncovered():
    """DELSLOTS on the owner alone: every other view still names it, but nobody serves the slots."""
    healthy = cluster_from(read("healthy_hostnames.txt"))
    owner = next(obs for obs in healthy.observations if obs.myself.slots == ((0, 5460),))
    dropped = view_text(read("healthy_hostnames.txt"), owner.myself.id).replace("connected 0-5460", "connected 0-5400")
    state = replaced(healthy, observation_from_replies(owner.address, dropped, "cluster_state:fail\r\n", ""))
    findings = assess(state)
    (inconsistent,) = [f for f in findings if f.kind == "inconsistent_config"]
    assert inconsistent.slots == ((5401, 5460),) and "60 slot(s)" in inconsistent.message
    assert "it says nobody" in inconsistent.message and inconsistent.severity == "critical"
    (uncovered,) = [f for f in findings if f.kind == "uncovered_slots"]
    assert uncovered.slots == ((5401, 5460),) and "claimed by no reachable master" in uncovered.message
    assert "name %s" % state.label(owner.myself.id) in uncovered.message
    facts = cluster_facts(state, findings)
    assert facts["slots_covered"] == 16384 - 60 and facts["state"] == "failed"


def test_uncovered_slots_when_all_agree():
    text = read("healthy_hostnames.txt").replace("connected 0-5460", "connected 0-5399")
    state = cluster_from(text, cluster_info="cluster_state:fail\r\n")
    findings = assess(state)
    uncovered = [f for f in findings if f.kind == "uncovered_slots"]
    assert len(uncovered) == 1 and uncovered[0].slots == ((5400, 5460),) and "61 slot(s)" in uncovered[0].message
    assert cluster_facts(state, findings)["state"] == "failed"


def test_anti_affinity_from_labels():
    entries = parse_cluster_nodes(read("healthy_hostnames.txt"))
    me = next(entry for entry in entries if entry.myself)
    replica = next(entry for entry in entries if entry.master_id == me.id)
    observations = (
        observation_from_replies(NodeAddress("127.0.0.1", me.port, (("zone", "z1"),)), read("healthy_hostnames.txt"), OK_INFO, ""),
        NodeObservation(NodeAddress("127.0.0.1", replica.port, (("zone", "z1"),)), reachable=False, error="down"),
    )
    findings = assess(ClusterState(observations))
    (finding,) = [f for f in findings if f.kind == "anti_affinity"]
    assert finding.nodes == (replica.id, me.id) and "zone z1" in finding.message
    unreachable = [f for f in findings if f.kind == "node_unreachable"]
    assert unreachable[0].nodes == (replica.id,) and unreachable[0].severity == "warning"


def test_imbalance_reports_an_empty_master():
    text = read("healthy_hostnames.txt") + (
        "1111111111111111111111111111111111111111 127.0.0.1:1@2 master - 0 0 9 connected\n")
    obs = observation_from_replies(NodeAddress("127.0.0.1", 1), text, OK_INFO, "")
    findings = assess(ClusterState((obs,)), imbalance_threshold=2.0)
    (finding,) = [f for f in findings if f.kind == "imbalance"]
    assert "100.0%" in finding.message and len(finding.nodes) == 4
    assert cluster_facts(ClusterState((obs,)), findings)["imbalance_pct"] == 100.0
    assert "imbalance" not in kinds(assess(ClusterState((obs,)), imbalance_threshold=100.0))


def test_keys_in_unserved_slots():
    import dataclasses
    obs = dataclasses.replace(observe("healthy_hostnames.txt"), foreign_keys=((6000, 2), (6001, 1)))
    (finding,) = [f for f in assess(ClusterState((obs,))) if f.kind == "multiple_owners"]
    assert finding.slots == ((6000, 6001),) and "3 key(s)" in finding.message and finding.nodes == (obs.myself.id,)


def view_of(text: str, port: int, drop_slots_of=()) -> NodeObservation:
    """The captured cluster as the node at port sees it, without the slots of the nodes at ports drop_slots_of."""
    lines = []
    for line in text.splitlines():
        fields, entry = line.split(), parse_cluster_nodes_line(line)
        fields[2] = ("myself," if entry.port == port else "") + fields[2].replace("myself,", "")
        if entry.port in drop_slots_of:
            fields = fields[:8]
        lines.append(" ".join(fields))
    return observation_from_replies(NodeAddress("127.0.0.1", port), "\n".join(lines), OK_INFO, "")


def healthy_views(changed: dict) -> ClusterState:
    """Every node's view of the captured cluster; changed: port -> ports whose slots that node's view lacks."""
    text = read("healthy_hostnames.txt")
    ports = [entry.port for entry in parse_cluster_nodes(text)]
    return ClusterState(tuple(view_of(text, port, changed.get(port, ())) for port in ports))


def test_a_view_that_has_yet_to_learn_owners_is_a_warning_and_moves_wait_for_it():
    # The node at 40005 knows 52627 but not yet the slots 52627 claims, as just after it met the cluster.
    state = healthy_views({40005: (52627,)})
    (learning,) = [f for f in assess(state) if f.kind == "inconsistent_config"]
    assert learning.severity == "warning" and learning.slots == ((10923, 16383),)
    assert "has yet to learn the owner of 5461 slot(s) 10923-16383" in learning.message
    refuse_unsound(state, assess(state))


def test_a_view_missing_an_owner_that_dropped_its_slots_is_critical():
    # The owner at 52627 dropped its own slots (CLUSTER DELSLOTS there): nobody will hear it claim them again.
    state = healthy_views({40005: (52627,), 52627: (52627,)})
    findings = [f for f in assess(state) if f.kind == "inconsistent_config"]
    assert len(findings) == 2 and {f.severity for f in findings} == {"critical"}
    assert all("disagrees with the majority view about 5461 slot(s)" in f.message for f in findings)
    with pytest.raises(PlanError, match="not sound enough"):
        refuse_unsound(state, assess(state))


def test_a_view_naming_another_owner_is_critical():
    text = read("healthy_hostnames.txt")
    ports = [entry.port for entry in parse_cluster_nodes(text)]
    # 40005 believes 39687 serves 10923-16383 too.
    odd = text.replace("connected 10923-16383", "connected").replace("connected 0-5460", "connected 0-5460 10923-16383")
    state = ClusterState(tuple(view_of(odd if port == 40005 else text, port) for port in ports))
    (finding,) = [f for f in assess(state) if f.kind == "inconsistent_config"]
    assert finding.severity == "critical" and "disagrees" in finding.message
    with pytest.raises(PlanError, match="not sound enough"):
        refuse_unsound(state, assess(state))
