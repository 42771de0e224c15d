# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_node with `redis_node_package: valkey-server` (Debian 13's Valkey 8.1) under a real systemd, over SSH.

One booted Debian 13 host (tests/lib/nspawn_hosts.py; its tree has the valkey packages in apt's cache) runs
three instances the roles deploy (the agent beside them); the tests below run in order on that deployment (the
last one changes a setting of one instance). Debian 12 has no valkey package.
"""

from __future__ import annotations

import os
import shlex

import pytest

import nspawn_hosts
from systemd_deployments import Deployment, deployed, unit_property

RELEASE = "13"
PORTS = 3
# The same switch as the other tests here: REDISOPS_SYSTEMD_RELEASES=12 leaves Debian 13 out.
RELEASES = os.environ.get("REDISOPS_SYSTEMD_RELEASES", "12 13").split()

pytestmark = [
    pytest.mark.skipif(nspawn_hosts.unavailable_reason() is not None, reason=str(nspawn_hosts.unavailable_reason())),
    pytest.mark.skipif(RELEASE not in RELEASES, reason="REDISOPS_SYSTEMD_RELEASES leaves out Debian 13, "
                                                       "the first release with a valkey package"),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    inventory = str(tmp_path_factory.mktemp("valkey") / "inventory.json")
    with deployed(RELEASE, ["redisops-valkey"], inventory, PORTS, {"redis_node_package": "valkey-server"}) as deployment:
        yield deployment


def valkey_cli(deployment: Deployment, port: int, *args: str) -> str:
    """valkey-cli on the host, the password on its standard input as the role's checks pass it."""
    command = "printf '%%s\\n' %s | valkey-cli --askpass -h 127.0.0.1 -p %d %s" % (
        shlex.quote(deployment.password), port, " ".join(shlex.quote(arg) for arg in args))
    return deployment.hosts[0].run(command).stdout.strip()


def info_server(deployment: Deployment, port: int) -> dict:
    fields = (line.partition(":") for line in valkey_cli(deployment, port, "INFO", "server").splitlines())
    return {name: value.strip() for name, separator, value in fields if separator}


def test_valkey_installed_and_redis_not(deployment):
    host = deployment.hosts[0]
    assert deployment.first_run.recap[host.name]["failed"] == 0
    version = host.run("dpkg-query -W -f '${Version}' valkey-server").stdout
    assert version.startswith("8.1."), version
    redis = host.run("dpkg-query -W -f '${db:Status-Status}' redis-server", check=False)
    assert redis.stdout != "installed", redis.stdout


def test_every_instance_active_and_answering_valkey_cli(deployment):
    host = deployment.hosts[0]
    for unit, port in zip(deployment.instance_units(host), deployment.ports[host.name]):
        assert host.run("systemctl is-active %s" % unit, check=False).stdout.strip() == "active", unit
        assert valkey_cli(deployment, port, "PING") == "PONG"
        assert unit_property(host, unit, "Type") == "notify"
        assert unit_property(host, unit, "User") == "valkey"
        assert "path=/usr/bin/valkey-server " in unit_property(host, unit, "ExecStart")
        info = info_server(deployment, port)
        assert info["server_name"] == "valkey" and info["valkey_version"].startswith("8.1."), info
        # The answer comes from the unit's own process.
        assert info["process_id"] == unit_property(host, unit, "MainPID")
        owners = host.run("stat -c %%U:%%G /var/lib/redis-cluster/%d/nodes-%d.conf /var/log/redis-cluster/redis-%d.log"
                          % (port, port, port)).stdout.split()
        assert owners == ["valkey:valkey"] * 2, owners


def test_distribution_instance_masked_and_not_running(deployment):
    host = deployment.hosts[0]
    assert host.run("systemctl is-active valkey-server.service", check=False).stdout.strip() != "active"
    assert host.run("systemctl is-enabled valkey-server.service", check=False).stdout.strip() in ("masked", "disabled")
    # The only servers running are the instances' own.
    running = host.run("pgrep -x valkey-server", check=False).stdout.split()
    assert sorted(running) == sorted(deployment.main_pids().values())


def test_systemd_analyze_verify_prints_nothing(deployment):
    host = deployment.hosts[0]
    for unit in deployment.instance_units(host) + ["redis-cluster-agent.service", "redis-cluster-agent.timer"]:
        proc = host.run("systemd-analyze verify %s" % unit, check=False)
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), unit


def test_second_run_reports_no_change(deployment):
    again = deployment.converge()
    assert again.recap[deployment.hosts[0].name]["changed"] == 0, again.output[-6000:]


def test_agent_reports_every_valkey_instance(deployment):
    host = deployment.hosts[0]
    deployment.run_agent(host)
    instances = deployment.facts(host)["instances"]
    assert sorted(instances) == sorted(str(port) for port in deployment.ports[host.name])
    for port, entry in instances.items():
        assert entry["error"] is None, (port, entry["error"])
        node = entry["node"]
        assert node["port"] == int(port)
        assert node["server_name"] == "valkey" and node["server_version"].startswith("8.1."), node


def test_changed_setting_restarts_only_its_instance(deployment):
    host = deployment.hosts[0]
    target = deployment.ports[host.name][1]
    setting = {"redis_node_instance_config": {target: {"maxmemory": "64mb"}}}
    run, restarted = deployment.restarts_of(setting)
    assert run.recap[host.name]["changed"] > 0
    assert restarted == [(host.name, "redis-cluster@%d.service" % target)]
    assert valkey_cli(deployment, target, "CONFIG", "GET", "maxmemory").split() == ["maxmemory", str(64 * 1024 * 1024)]
    again = deployment.converge(setting)
    assert again.recap[host.name]["changed"] == 0, again.output[-6000:]
