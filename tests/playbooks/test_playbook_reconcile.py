# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ansible-playbook redisops.cluster.reconcile on three local hosts (127.0.0.2-4, zones a-c, tests/lib/role_hosts) that
the deploy playbook set up with the roles (plain processes) without forming a cluster. The tests run in file order
on one deployment: created by reconcile, left alone, refused on stale facts, repaired after a killed master and a
half-moved slot, grown by an instance that is in no cluster.
"""

from __future__ import annotations

import json
import os

import pytest
import redis
from cluster_checks import wait_for
from playbook_runs import reconcile_decisions, run_collection_playbook
from role_hosts import RoleHost, RoleHosts, age_facts, free_instance_ports

PASSWORD = "reconcile pässword 5"
HASH_TAG = "{reconcile}"


class Deployment:
    """Three hosts (zones a, b, c, two instances each) that the deploy playbook set up without forming a cluster."""

    def __init__(self, hosts: RoleHosts):
        self.role_hosts = hosts
        self.history_dir = os.path.join(hosts.root, "history")
        hosts.group_vars["redis_cluster_reconcile_history_dir"] = self.history_dir
        self.hosts = [hosts.add("redis_cluster", zone, 2) for zone in ("a", "b", "c")]

    def deploy(self) -> None:
        run = run_collection_playbook("deploy", self.role_hosts.inventory(),
                                      extra_vars={"redis_cluster_deploy_create": False})
        assert run.rc == 0, run.output

    def reconcile(self, check: bool = False, **extra_vars):
        run = run_collection_playbook("reconcile", self.role_hosts.inventory(), extra_vars=extra_vars or None,
                                      check=check, timeout=600)
        assert PASSWORD not in run.output
        return run

    @property
    def instances(self) -> list:
        return [(host, port) for host in self.hosts for port in host.ports]

    def client(self, host: RoleHost, port: int) -> redis.Redis:
        return redis.Redis(host=host.address, port=port, password=PASSWORD, socket_timeout=5)

    def live(self) -> list:
        live = []
        for host, port in self.instances:
            try:
                self.client(host, port).ping()
                live.append((host, port))
            except redis.ConnectionError:
                continue
        return live


# --- what the tests read from the cluster ------------------------------------------------------------------

def cluster_nodes(deployment: Deployment, host: RoleHost, port: int) -> list:
    """CLUSTER NODES of one instance, split, sorted, without the ping and pong times."""
    text = deployment.client(host, port).execute_command("CLUSTER", "NODES").decode()
    return sorted(fields[:4] + fields[6:] for fields in (line.split() for line in text.splitlines()))


def observed(deployment: Deployment) -> dict:
    """Every live instance's view and key count: what check mode must leave as it is."""
    return {"%s:%d" % (host.address, port): (cluster_nodes(deployment, host, port), deployment.client(host, port).dbsize())
            for host, port in deployment.live()}


def myself(deployment: Deployment, host: RoleHost, port: int) -> list:
    return next(fields for fields in cluster_nodes(deployment, host, port) if "myself" in fields[2])


def masters(deployment: Deployment) -> list:
    """(host, port) of the live masters that serve slots."""
    return [(host, port) for host, port in deployment.live()
            if "master" in myself(deployment, host, port)[2] and len(myself(deployment, host, port)) > 6]


def slot_counts(deployment: Deployment) -> dict:
    counts = {}
    for host, port in masters(deployment):
        ranges = [token.split("-") for token in myself(deployment, host, port)[6:] if not token.startswith("[")]
        counts["%s:%d" % (host.address, port)] = sum(int(r[-1]) - int(r[0]) + 1 for r in ranges)
    return counts


def cluster_client(deployment: Deployment) -> redis.RedisCluster:
    host, port = deployment.live()[0]
    return redis.RedisCluster(host=host.address, port=port, password=PASSWORD, socket_timeout=5)


def read_keys(deployment: Deployment, keys) -> dict:
    client = cluster_client(deployment)
    try:
        return {key: client.get(key) for key in keys}
    finally:
        client.close()


def cluster_ok(deployment: Deployment) -> bool:
    return all(b"cluster_state:ok" in deployment.client(host, port).execute_command("CLUSTER", "INFO")
               for host, port in deployment.live())


def changed(run) -> int:
    return sum(counts["changed"] for counts in run.recap.values())


def history(deployment: Deployment) -> list:
    with open(os.path.join(deployment.history_dir, "redis_cluster.jsonl")) as handle:
        text = handle.read()
    assert PASSWORD not in text and json.dumps(PASSWORD)[1:-1] not in text
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def deployment():
    with RoleHosts(password=PASSWORD) as hosts:
        deployed = Deployment(hosts)
        deployed.deploy()
        yield deployed


# --- the tests, in order, on one deployment ------------------------------------------------------------------

def test_check_mode_shows_the_creation_and_creates_nothing(deployment):
    before = observed(deployment)
    assert all(len(view) == 1 for view, _keys in before.values())
    run = deployment.reconcile(check=True)
    assert run.rc == 0, run.output
    assert changed(run) == 0
    lines = reconcile_decisions(run.output)
    assert len(lines) == 1 and lines[0].startswith("create: no reporting instance is in a cluster and 6 report"), lines
    assert observed(deployment) == before
    assert not os.path.exists(deployment.history_dir)


def test_a_cluster_not_yet_created_is_created(deployment):
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert run.recap["host-1"]["changed"] == 1
    assert sum(slot_counts(deployment).values()) == 16384 and len(slot_counts(deployment)) == 3
    zones = {"%s:%d" % (host.address, port): host.zone for host, port in deployment.instances}
    ids = {myself(deployment, host, port)[0]: "%s:%d" % (host.address, port) for host, port in deployment.instances}
    replicas = [myself(deployment, host, port) for host, port in deployment.instances
                if "slave" in myself(deployment, host, port)[2]]
    assert len(replicas) == 3
    for fields in replicas:
        assert zones[ids[fields[0]]] != zones[ids[fields[3]]], fields
    wait_for(lambda: cluster_ok(deployment), message="cluster_state:ok")
    record = history(deployment)[-1]
    assert record["cluster"] == "redis_cluster" and record["decisions"][0].startswith("create: ")
    assert set(record["hosts"]) == {"host-1", "host-2", "host-3"}
    assert all(host["collected_at"] and host["interval"] == 30 for host in record["hosts"].values())


def test_a_run_with_nothing_to_do_changes_nothing(deployment):
    client = cluster_client(deployment)
    try:
        for index in range(2000):
            client.set("key:%d" % index, "value-%d" % index)
        for index in range(40):
            client.set("%s:%d" % (HASH_TAG, index), "tagged-%d" % index)
    finally:
        client.close()
    wait_for(lambda: all(deployment.client(h, p).dbsize() == deployment.client(*_master_of(deployment, h, p)).dbsize()
                         for h, p in deployment.live() if "slave" in myself(deployment, h, p)[2]),
             message="replicas in sync")
    before = observed(deployment)
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert changed(run) == 0, run.recap
    assert reconcile_decisions(run.output) == ["nothing to do: every instance reports, the cluster is whole and balanced"]
    assert observed(deployment) == before
    assert len(history(deployment)) == 2


def _master_of(deployment: Deployment, host: RoleHost, port: int) -> tuple:
    master_id = myself(deployment, host, port)[3]
    return next((h, p) for h, p in deployment.live() if myself(deployment, h, p)[0] == master_id)


def test_stale_facts_are_refused_naming_the_host(deployment):
    host = deployment.hosts[1]
    collected_at = age_facts(os.path.join(host.facts_dir, "redis_cluster.fact"), 600)
    before = observed(deployment)
    run = deployment.reconcile(redis_cluster_reconcile_refresh=False)
    assert run.rc != 0
    assert "Refused, nothing decided: host-2: facts collected %s are " % collected_at in run.output
    assert "more than 3 intervals of 30 s" in run.output
    assert "TASK [Show the decisions]" not in run.output
    assert observed(deployment) == before
    assert history(deployment)[-1]["refused"][0].startswith("host-2: facts collected")


def test_a_killed_master_and_a_half_moved_slot_are_repaired_in_one_run(deployment):
    tagged = ["%s:%d" % (HASH_TAG, index) for index in range(40)]
    keys = ["key:%d" % index for index in range(2000)] + tagged
    values = read_keys(deployment, keys)
    assert all(values.values())
    # Kill a master that does not serve the tagged slot; its replica takes over.
    slot = cluster_client(deployment).keyslot(tagged[0])
    owner = next((h, p) for h, p in masters(deployment) if _serves(deployment, h, p, slot))
    victim_host, victim_port = next((h, p) for h, p in masters(deployment) if (h, p) != owner)
    victim_id = myself(deployment, victim_host, victim_port)[0]
    replica = next((h, p) for h, p in deployment.live() if myself(deployment, h, p)[3] == victim_id)
    deployment.role_hosts.kill("%s:%d" % (victim_host.address, victim_port))
    wait_for(lambda: "master" in myself(deployment, *replica)[2] and cluster_ok(deployment), timeout=60,
             message="the replica to take over")
    # Leave the tagged slot half-moved from its owner to the third master: both sides open, half the keys moved.
    target = next((h, p) for h, p in masters(deployment) if (h, p) not in (owner, replica))
    owner_client, target_client = deployment.client(*owner), deployment.client(*target)
    owner_id, target_id = myself(deployment, *owner)[0], myself(deployment, *target)[0]
    target_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id)
    owner_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    owner_client.execute_command("MIGRATE", target[0].address, target[1], "", 0, 5000, "AUTH", PASSWORD,
                                 "KEYS", *tagged[:20])
    assert target_client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 20

    before = observed(deployment)
    run = deployment.reconcile(check=True)
    assert run.rc == 0, run.output
    assert changed(run) == 0
    lines = reconcile_decisions(run.output)
    victim = "%s:%d" % (victim_host.address, victim_port)
    assert [line.split(":")[0] for line in lines] == ["start", "fix", "restore_placement"], lines
    assert lines[0].startswith("start: %s: its agent cannot read %s (" % (victim_host.name, victim)), lines
    assert "has slot(s) %d open" % slot in lines[1]
    assert observed(deployment) == before

    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert run.recap[victim_host.name]["changed"] > 0
    wait_for(lambda: cluster_ok(deployment), message="cluster_state:ok")
    assert len(deployment.live()) == len(deployment.instances)
    # The old master came back as a replica; a failover spread the masters over the three zones again.
    assert sorted(host.zone for host, _port in masters(deployment)) == ["a", "b", "c"]
    assert "spreads the masters" in lines[2] and "TASK [Spread the masters over the zones again]" in run.output
    for host, port in deployment.live():
        assert not any(token.startswith("[") for token in myself(deployment, host, port)), (host.name, port)
    assert _serves(deployment, *target, slot) or _serves(deployment, *owner, slot)
    assert read_keys(deployment, keys) == values
    assert sum(slot_counts(deployment).values()) == 16384

    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert changed(run) == 0, run.output


def _serves(deployment: Deployment, host: RoleHost, port: int, slot: int) -> bool:
    for token in myself(deployment, host, port)[6:]:
        if token.startswith("["):
            continue
        first, _sep, last = token.partition("-")
        if int(first) <= slot <= int(last or first):
            return True
    return False


def test_an_instance_in_no_cluster_is_added_and_the_masters_rebalanced(deployment):
    keys = ["key:%d" % index for index in range(2000)] + ["%s:%d" % (HASH_TAG, index) for index in range(40)]
    values = read_keys(deployment, keys)
    host = deployment.hosts[2]
    host.ports.append(free_instance_ports(1, host.address)[0])
    deployment.deploy()
    new = "%s:%d" % (host.address, host.ports[-1])
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    lines = reconcile_decisions(run.output)
    assert lines[0].startswith("add: %s reports but is in no cluster, and every master has 1 replica(s): add it as "
                               "a master" % new), lines
    assert lines[1].startswith("rebalance: beyond the threshold of 2%: ") and new + " holds 0, its share is 4096" in lines[1]
    counts = slot_counts(deployment)
    assert len(counts) == 4 and counts[new] == 4096 and sum(counts.values()) == 16384
    assert read_keys(deployment, keys) == values
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert changed(run) == 0, run.output
