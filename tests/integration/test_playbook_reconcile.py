# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ansible-playbook redisops.cluster.reconcile on three local hosts (127.0.0.2-4, zones a-c) that the roles deployed
(redis_node and redis_cluster_agent, plain processes, every directory in a temporary one). The tests run in file
order on one deployment: created by reconcile, left alone, refused on stale facts, repaired after a killed master
and a half-moved slot, grown by an instance that is in no cluster.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest
import redis
from cluster_checks import wait_for
from playbook_runs import ANSIBLE_PLAYBOOK, ansible_env, local_inventory, run_collection_playbook
from redis_harness import free_ports

PASSWORD = "reconcile-pässword"
ZONES = ("a", "b", "c")
HASH_TAG = "{reconcile}"


class Host:
    """One inventory host: its loopback address, zone, ports and directories."""

    def __init__(self, root: str, index: int, ports: list):
        self.name = "host-" + ZONES[index]
        self.zone = ZONES[index]
        self.address = "127.0.0.%d" % (index + 2)
        self.ports = list(ports)
        self.root = os.path.join(root, self.name)
        self.run_dir = os.path.join(self.root, "run")
        self.facts_dir = os.path.join(self.root, "facts.d")

    def variables(self) -> dict:
        return {
            "redis_cluster_zone": self.zone,
            "redis_node_bind": self.address,
            # Connections from any loopback address leave from 127.0.0.1 unless the node announces its own.
            "redis_node_announce_ip": self.address,
            "redis_node_ports": self.ports,
            "redis_node_data_dir": os.path.join(self.root, "data"),
            "redis_node_conf_dir": os.path.join(self.root, "conf"),
            "redis_node_log_dir": os.path.join(self.root, "log"),
            "redis_node_run_dir": self.run_dir,
            "redis_cluster_agent_lib_dir": os.path.join(self.root, "agent"),
            "redis_cluster_agent_conf_dir": os.path.join(self.root, "agent-conf"),
            "redis_cluster_agent_facts_dir": self.facts_dir,
        }

    def pid(self, port: int):
        try:
            with open(os.path.join(self.run_dir, "redis-%d.pid" % port)) as handle:
                return int(handle.read())
        except (OSError, ValueError):
            return None


class Deployment:
    def __init__(self, root: str, ports_per_host: int):
        self.root = root
        self.history_dir = os.path.join(root, "history")
        self.hosts = []
        for index in range(len(ZONES)):
            address = "127.0.0.%d" % (index + 2)
            self.hosts.append(Host(root, index, _instance_ports(address, ports_per_host)))
        self.playbook = os.path.join(root, "deploy.yml")
        with open(self.playbook, "w") as handle:
            json.dump([{"hosts": "redis_cluster", "gather_facts": False,
                        "roles": ["redisops.cluster.redis_node", "redisops.cluster.redis_cluster_agent"]}], handle)

    def inventory(self) -> dict:
        return local_inventory({"redis_cluster": {host.name: host.variables() for host in self.hosts}},
                               redis_node_supervisor="none", redis_node_manage_package=False,
                               redis_node_password=PASSWORD, redis_node_cluster_node_timeout=2000,
                               redis_cluster_agent_manage_packages=False, redis_cluster_agent_python=sys.executable,
                               redis_cluster_reconcile_history_dir=self.history_dir)

    def deploy(self) -> None:
        path = os.path.join(self.root, "inventory.json")
        with open(path, "w") as handle:
            json.dump(self.inventory(), handle)
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", path, self.playbook], env=ansible_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout

    def reconcile(self, check: bool = False, **extra_vars):
        return run_collection_playbook("reconcile", self.inventory(), extra_vars=extra_vars or None, check=check,
                                       timeout=600)

    @property
    def instances(self) -> list:
        return [(host, port) for host in self.hosts for port in host.ports]

    def client(self, host: Host, port: int) -> redis.Redis:
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

    def stop(self) -> None:
        pids = [host.pid(port) for host, port in self.instances]
        for pid in filter(None, pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _instance_ports(address: str, count: int) -> list:
    """Ports whose bus ports (port + 10000) are free too, on address."""
    ports = []
    while len(ports) < count:
        for port in free_ports(count * 4, address):
            if port + 10000 < 65536 and port not in ports and _free(address, port + 10000):
                ports.append(port)
            if len(ports) == count:
                break
    return ports


def _free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


# --- what the tests read from the cluster ------------------------------------------------------------------

def cluster_nodes(deployment: Deployment, host: Host, port: int) -> list:
    """CLUSTER NODES of one instance, split, sorted, without the ping and pong times."""
    text = deployment.client(host, port).execute_command("CLUSTER", "NODES").decode()
    return sorted(fields[:4] + fields[6:] for fields in (line.split() for line in text.splitlines()))


def observed(deployment: Deployment) -> dict:
    """Every live instance's view and key count: what check mode must leave as it is."""
    return {"%s:%d" % (host.address, port): (cluster_nodes(deployment, host, port), deployment.client(host, port).dbsize())
            for host, port in deployment.live()}


def myself(deployment: Deployment, host: Host, port: int) -> list:
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


def decisions(output: str) -> list:
    """The lines the playbook printed under Show the decisions."""
    block = output.split("TASK [Show the decisions]", 1)[1].split("TASK [", 1)[0]
    return [json.loads(line.strip().rstrip(",")) for line in block.splitlines() if line.strip().startswith('"')
            and not line.strip().startswith('"msg"')]


def changed(run) -> int:
    return sum(counts["changed"] for counts in run.recap.values())


def history(deployment: Deployment) -> list:
    with open(os.path.join(deployment.history_dir, "redis_cluster.jsonl")) as handle:
        text = handle.read()
    assert PASSWORD not in text and json.dumps(PASSWORD)[1:-1] not in text
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def deployment():
    root = tempfile.mkdtemp(prefix="redisops-reconcile-")
    deployed = Deployment(root, ports_per_host=2)
    try:
        deployed.deploy()
        yield deployed
    finally:
        deployed.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- the tests, in order, on one deployment ------------------------------------------------------------------

def test_check_mode_shows_the_creation_and_creates_nothing(deployment):
    before = observed(deployment)
    assert all(len(view) == 1 for view, _keys in before.values())
    run = deployment.reconcile(check=True)
    assert run.rc == 0, run.output
    assert changed(run) == 0
    lines = decisions(run.output)
    assert len(lines) == 1 and lines[0].startswith("create: no reporting instance is in a cluster and 6 report"), lines
    assert observed(deployment) == before
    assert not os.path.exists(deployment.history_dir)


def test_a_cluster_not_yet_created_is_created(deployment):
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert run.recap["host-a"]["changed"] == 1
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
    assert set(record["hosts"]) == {"host-a", "host-b", "host-c"}
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
    assert decisions(run.output) == ["nothing to do: every instance reports, the cluster is whole and balanced"]
    assert observed(deployment) == before
    assert len(history(deployment)) == 2


def _master_of(deployment: Deployment, host: Host, port: int) -> tuple:
    master_id = myself(deployment, host, port)[3]
    return next((h, p) for h, p in deployment.live() if myself(deployment, h, p)[0] == master_id)


def test_stale_facts_are_refused_naming_the_host(deployment):
    host = deployment.hosts[1]
    path = os.path.join(host.facts_dir, "redis_cluster.fact")
    with open(path) as handle:
        facts = json.load(handle)
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=600)
    facts["collected_at"] = old.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "w") as handle:
        json.dump(facts, handle)
    before = observed(deployment)
    run = deployment.reconcile(redis_cluster_reconcile_refresh=False)
    assert run.rc != 0
    assert "Refused, nothing decided: host-b: facts collected %s are " % facts["collected_at"] in run.output
    assert "more than 3 intervals of 30 s" in run.output
    assert "TASK [Show the decisions]" not in run.output
    assert observed(deployment) == before
    assert history(deployment)[-1]["refused"][0].startswith("host-b: facts collected")


def test_a_killed_master_and_a_half_moved_slot_are_repaired_in_one_run(deployment):
    tagged = ["%s:%d" % (HASH_TAG, index) for index in range(40)]
    keys = ["key:%d" % index for index in range(2000)] + tagged
    values = read_keys(deployment, keys)
    assert all(values.values())
    # Kill a master that does not serve the tagged slot; its replica takes over.
    slot = cluster_client(deployment).keyslot(tagged[0])
    by_address = {"%s:%d" % (h.address, p): (h, p) for h, p in deployment.instances}
    owner = next((h, p) for h, p in masters(deployment) if _serves(deployment, h, p, slot))
    victim_host, victim_port = next((h, p) for h, p in masters(deployment) if (h, p) != owner)
    victim_id = myself(deployment, victim_host, victim_port)[0]
    replica = next((h, p) for h, p in deployment.live() if myself(deployment, h, p)[3] == victim_id)
    os.kill(victim_host.pid(victim_port), signal.SIGKILL)
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
    lines = decisions(run.output)
    victim = "%s:%d" % (victim_host.address, victim_port)
    assert [line.split(":")[0] for line in lines] == ["start", "fix"], lines
    assert victim in lines[0] and victim_host.name in lines[0]
    assert "has slot(s) %d open" % slot in lines[1]
    assert observed(deployment) == before

    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert run.recap[victim_host.name]["changed"] > 0
    wait_for(lambda: cluster_ok(deployment), message="cluster_state:ok")
    assert len(deployment.live()) == len(deployment.instances)
    back = myself(deployment, victim_host, victim_port)
    assert "slave" in back[2] and back[3] == myself(deployment, *replica)[0]
    for host, port in deployment.live():
        assert not any(token.startswith("[") for token in myself(deployment, host, port)), (host.name, port)
    assert _serves(deployment, *target, slot) or _serves(deployment, *owner, slot)
    assert read_keys(deployment, keys) == values
    assert sum(slot_counts(deployment).values()) == 16384
    assert by_address[victim] == (victim_host, victim_port)

    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert changed(run) == 0, run.output


def _serves(deployment: Deployment, host: Host, port: int, slot: int) -> bool:
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
    host.ports.append(_instance_ports(host.address, 1)[0])
    deployment.deploy()
    new = "%s:%d" % (host.address, host.ports[-1])
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    lines = decisions(run.output)
    assert lines[0].startswith("add: %s reports but is in no cluster, and every master has 1 replica(s): add it as "
                               "a master" % new), lines
    assert lines[1].startswith("rebalance: beyond the threshold of 2%: ") and new + " holds 0, its share is 4096" in lines[1]
    counts = slot_counts(deployment)
    assert len(counts) == 4 and counts[new] == 4096 and sum(counts.values()) == 16384
    assert read_keys(deployment, keys) == values
    run = deployment.reconcile()
    assert run.rc == 0, run.output
    assert changed(run) == 0, run.output
