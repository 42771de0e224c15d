# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_node and redis_cluster_agent under a real systemd (PID 1), applied over SSH, on Debian 12 and 13.

Per release, two booted hosts (tests/lib/nspawn_hosts.py) share this machine's network, each with
its own three ports; the roles are applied once and the tests below run in order on that deployment
(the last ones change it: a setting of one instance, then a cluster over both hosts).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import redis

import nspawn_hosts
from playbook_runs import ANSIBLE, ansible_env, run_module, run_playbook
from redis_harness import wait_converged
from systemd_deployments import FACTS_FILE, Deployment, deployed, unit_property

PORTS_PER_HOST = 3
# REDISOPS_SYSTEMD_RELEASES=12 runs one release only.
RELEASES = os.environ.get("REDISOPS_SYSTEMD_RELEASES", "12 13").split()

pytestmark = pytest.mark.skipif(nspawn_hosts.unavailable_reason() is not None,
                                reason=str(nspawn_hosts.unavailable_reason()))


@pytest.fixture(scope="module", params=RELEASES, ids=["debian%s" % release for release in RELEASES])
def deployment(request, tmp_path_factory):
    release = request.param
    inventory = str(tmp_path_factory.mktemp("debian%s" % release) / "inventory.json")
    names = ["redisops-d%s-a" % release, "redisops-d%s-b" % release]
    with deployed(release, names, inventory, PORTS_PER_HOST) as deployment:
        yield deployment


def test_booted_with_systemd_as_pid_1(deployment):
    for host in deployment.hosts:
        assert host.run("cat /proc/1/comm").stdout.strip() == "systemd"
        assert host.system_state in ("running", "degraded"), host.failed_units
        release = host.run(". /etc/os-release && echo $VERSION_ID").stdout.strip()
        assert release == host.release


def test_every_instance_active_and_answering(deployment):
    assert deployment.first_run.recap, deployment.first_run.output[-3000:]
    for host in deployment.hosts:
        assert deployment.first_run.recap[host.name]["failed"] == 0
        for unit, port in zip(deployment.instance_units(host), deployment.ports[host.name]):
            assert host.run("systemctl is-active %s" % unit, check=False).stdout.strip() == "active", unit
            assert deployment.client(port).ping() is True
            assert unit_property(host, unit, "Type") == "notify"
            # The answer comes from the unit's own process: its main PID is the server's.
            assert unit_property(host, unit, "MainPID") == str(deployment.client(port).info("server")["process_id"])
        # The distribution's own instance on 6379 neither runs nor comes back at boot.
        assert host.run("systemctl is-active redis-server.service", check=False).stdout.strip() != "active"
        assert host.run("systemctl is-enabled redis-server.service", check=False).stdout.strip() in (
            "masked", "disabled")


def test_systemd_analyze_verify_prints_nothing(deployment):
    for host in deployment.hosts:
        units = deployment.instance_units(host) + ["redis-cluster-agent.service", "redis-cluster-agent.timer"]
        for unit in units:
            proc = host.run("systemd-analyze verify %s" % unit, check=False)
            assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), unit


def test_second_run_reports_no_change(deployment):
    again = deployment.converge()
    for host in deployment.hosts:
        assert again.recap[host.name]["changed"] == 0, again.output[-6000:]


def test_facts_file_lists_every_instance_and_holds_no_password(deployment):
    for host in deployment.hosts:
        deployment.run_agent(host)
        facts = deployment.facts(host)
        assert sorted(facts["instances"]) == sorted(str(port) for port in deployment.ports[host.name])
        assert facts["host"] == host.name and facts["interval"] == 30
        for port, entry in facts["instances"].items():
            assert entry["error"] is None, (port, entry["error"])
            assert entry["node"]["port"] == int(port)
        raw = host.run("cat %s" % FACTS_FILE).stdout
        assert deployment.password not in raw
        mode = host.run("stat -c %%a:%%U %s" % FACTS_FILE).stdout.strip()
        assert mode == "644:root" or mode.startswith("644:"), mode
        # Nor is it on a command line or in the environment of the agent's unit.
        for unit in ("redis-cluster-agent.service",) + tuple(deployment.instance_units(host)):
            shown = host.run("systemctl show %s" % unit).stdout
            assert deployment.password not in shown, unit


def test_ansible_setup_shows_the_local_facts(deployment):
    proc = subprocess.run([ANSIBLE, "all", "-i", deployment.inventory, "-m", "ansible.builtin.setup",
                           "-a", "filter=ansible_local", "--one-line"],
                          env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    reported = {}
    for line in proc.stdout.splitlines():
        name, separator, result = line.partition(" | SUCCESS => ")
        if separator:
            reported[name] = sorted(json.loads(result)["ansible_facts"]["ansible_local"]["redis_cluster"]["instances"])
    assert reported == {host.name: sorted(str(port) for port in deployment.ports[host.name])
                        for host in deployment.hosts}, proc.stdout


def test_timer_refreshes_the_facts_twice_within_70_seconds(deployment):
    host = deployment.hosts[0]
    assert host.run("systemctl is-active redis-cluster-agent.timer", check=False).stdout.strip() == "active"
    seen = [deployment.facts(host)["collected_at"]]
    deadline = time.monotonic() + 70
    while time.monotonic() < deadline and len(seen) < 3:
        time.sleep(1)
        collected_at = deployment.facts(host)["collected_at"]
        if collected_at != seen[-1]:
            seen.append(collected_at)
    assert len(seen) >= 3, "facts written at %s only" % seen
    # Written by the timer's runs, by the unprivileged user.
    assert unit_property(host, "redis-cluster-agent.service", "User") not in ("", "root")


def test_changed_setting_restarts_only_its_instance(deployment):
    host = deployment.hosts[0]
    target = deployment.ports[host.name][1]
    run, restarted = deployment.restarts_of({"redis_node_instance_config": {target: {"maxmemory": "64mb"}}})
    assert run.recap[host.name]["changed"] > 0
    assert restarted == [(host.name, "redis-cluster@%d.service" % target)]
    assert deployment.client(target).config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    # Rewritten settings stay the role's: the next run changes nothing again.
    again = deployment.converge({"redis_node_instance_config": {target: {"maxmemory": "64mb"}}})
    assert all(counts["changed"] == 0 for counts in again.recap.values()), again.output[-6000:]


def test_cluster_over_two_hosts_reported_ok_by_both_agents(deployment):
    specs = [{"host": "127.0.0.1", "port": port, "hostname": host.name}
             for host in deployment.hosts for port in deployment.ports[host.name]]
    created = run_module("redis_cluster_create", {"nodes": specs, "replicas": 1, "login_password": deployment.password})
    assert created["changed"] is True and not created.get("failed"), created.get("msg")
    assert created["after"]["slots_covered"] == 16384
    wait_converged([_Node(deployment, port) for host in deployment.hosts for port in deployment.ports[host.name]])
    reported = {}
    for host in deployment.hosts:
        deployment.run_agent(host)
        facts = deployment.facts(host)
        states = {port: entry["cluster"]["state"] for port, entry in facts["instances"].items()}
        assert states == {str(port): "ok" for port in deployment.ports[host.name]}, facts
        reported.update({entry["node"]["id"]: (host.name, entry["node"]) for entry in facts["instances"].values()})
    masters = [node for _name, node in reported.values() if node["role"] == "master"]
    assert len(reported) == 6 and len(masters) == 3 and sum(node["slot_count"] for node in masters) == 16384
    # Placed by hostname label: every replica on the other host than its master.
    for name, node in reported.values():
        if node["role"] != "master":
            assert reported[node["master_id"]][0] != name, node


class _Node:
    """What redis_harness.wait_converged reads of a node, for an instance the roles run."""

    def __init__(self, deployment: Deployment, port: int):
        self.port = port
        self.password = deployment.password

    def call(self, *args):
        with redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5) as conn:
            return conn.execute_command(*args)

    def cluster_nodes(self) -> str:
        conn = redis.Connection(host="127.0.0.1", port=self.port, password=self.password)
        try:
            conn.send_command("CLUSTER", "NODES")
            return conn.read_response().decode()
        finally:
            conn.disconnect()


def test_reconcile_runs_each_agent_service_and_finds_nothing_to_do(deployment, tmp_path):
    run = run_playbook("redisops.cluster.reconcile", deployment.inventory,
                       extra_vars={"redis_cluster_group": "redis_hosts",
                                   "redis_cluster_reconcile_history_dir": str(tmp_path)})
    assert run.rc == 0, run.output[-6000:] + deployment.journals()
    assert all(counts["changed"] == 0 for counts in run.recap.values()), run.output[-6000:]
    refresh = run.output.split("Run the agent's service once and wait for it]", 1)[1].split("TASK [", 1)[0]
    assert sorted(line.split("[")[1].rstrip("]") for line in refresh.splitlines() if line.startswith("ok: ")) \
        == sorted(host.name for host in deployment.hosts), refresh
    assert "nothing to do: every instance reports, the cluster is whole and balanced" in run.output
    with open(tmp_path / "redis_hosts.jsonl") as handle:
        record = json.loads(handle.read())
    assert deployment.password not in json.dumps(record)
    assert sorted(record["hosts"]) == sorted(host.name for host in deployment.hosts)


def test_journal_of_the_agent_and_the_instances_holds_no_password(deployment):
    # Every field of every entry (the message, and what journald adds: _CMDLINE, _EXE, ...), as JSON.
    for host in deployment.hosts:
        agent = host.run("journalctl --no-pager -o json -u redis-cluster-agent.service").stdout
        instances = host.run("journalctl --no-pager -o json -u 'redis-cluster@*'").stdout
        assert agent.count("\n") >= 2 and instances.count("\n") >= len(deployment.ports[host.name]), host.name
        assert deployment.password not in agent + instances, host.name
