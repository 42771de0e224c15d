# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Booted Debian hosts (nspawn_hosts) with the redis_node and redis_cluster_agent roles applied over SSH.

`deployed` boots the hosts, gives each its own free ports, writes the inventory and runs the molecule scenario's
converge playbook (both roles) once; the hosts are stopped when the context ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets

import redis

import nspawn_hosts
from playbook_runs import run_playbook

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERGE = os.path.join(ROOT, "extensions", "molecule", "debian_systemd", "converge.yml")
FACTS_FILE = "/etc/ansible/facts.d/redis_cluster.fact"
BUS_OFFSET = 10000


class Deployment:
    """Booted hosts with both roles applied, and what the tests need to reach them."""

    def __init__(self, hosts: nspawn_hosts.Hosts, ports: dict, password: str, inventory: str):
        self.hosts = hosts
        self.ports = ports
        self.password = password
        self.inventory = inventory
        self.first_run = None

    def converge(self, extra_vars=None):
        run = run_playbook(CONVERGE, self.inventory, extra_vars=extra_vars)
        assert run.rc == 0, run.output[-6000:] + self.journals()
        return run

    def journals(self) -> str:
        """The hosts' warnings and the roles' units' logs, to tell why a run failed."""
        command = ("journalctl --no-pager -o short-precise -n 60 -p warning; "
                   "journalctl --no-pager -o short-precise -n 60 -u 'redis-cluster*'")
        return "".join("\n--- %s:\n%s" % (host.name, host.run(command, check=False).stdout) for host in self.hosts)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=5)

    def run_agent(self, host: nspawn_hosts.Host) -> None:
        """One run of the agent's service now (as its timer would start it)."""
        proc = host.run("systemctl start redis-cluster-agent.service", timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr + self.journals()

    def facts(self, host: nspawn_hosts.Host) -> dict:
        return json.loads(host.run("cat %s" % FACTS_FILE).stdout)

    def instance_units(self, host: nspawn_hosts.Host) -> list:
        return ["redis-cluster@%d.service" % port for port in self.ports[host.name]]

    def main_pids(self) -> dict:
        """(host name, unit) -> the MainPID of every instance unit of every host."""
        return {(host.name, unit): unit_property(host, unit, "MainPID")
                for host in self.hosts for unit in self.instance_units(host)}

    def restarts_of(self, extra_vars):
        """Converge with `extra_vars`: the run, and the (host name, unit) of every instance whose process changed."""
        pids_before = self.main_pids()
        run = self.converge(extra_vars)
        pids_after = self.main_pids()
        return run, sorted(key for key in pids_before if pids_before[key] != pids_after[key])


def unit_property(host: nspawn_hosts.Host, unit: str, name: str) -> str:
    return host.run("systemctl show --property %s --value %s" % (name, unit)).stdout.strip()


@contextlib.contextmanager
def deployed(release: str, names, inventory: str, ports_per_host: int, group_vars=None):
    """Hosts of Debian `release` named `names`, `ports_per_host` instances each, both roles applied once (its run is
    `first_run`); `group_vars` add to (or override) the password, loopback bind and short node timeout given here."""
    with nspawn_hosts.Hosts(release, names) as hosts:
        taken = []
        ports = {}
        for host in hosts:
            ports[host.name] = []
            for _index in range(ports_per_host):
                port = nspawn_hosts.free_port_pair(BUS_OFFSET, avoid=taken)
                taken += [port, port + BUS_OFFSET]
                ports[host.name].append(port)
        password = secrets.token_hex(16)
        hosts.write_inventory(inventory, group_vars=dict({
            # Loopback only: these hosts share this machine's network.
            "redis_node_bind": "127.0.0.1",
            "redis_node_password": password,
            "redis_node_cluster_node_timeout": 2000,
            "redis_node_appendonly": False,
        }, **(group_vars or {})), host_vars={host.name: {"redis_node_ports": ports[host.name]} for host in hosts})
        deployment = Deployment(hosts, ports, password, inventory)
        deployment.first_run = deployment.converge()
        yield deployment
