# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deploy and check playbooks on three local hosts in three zones that the roles set up (plain processes); the
tests run in file order on one deployment."""

from __future__ import annotations

import os

import pytest
import redis
from playbook_runs import run_collection_playbook
from role_hosts import RoleHosts

PASSWORD = "deploy pässword 7"


@pytest.fixture(scope="module")
def hosts():
    with RoleHosts(password=PASSWORD) as deployed:
        for zone in ("a", "b", "c"):
            deployed.add("redis_cluster", zone, 3)
        yield deployed


def addresses(hosts) -> list:
    return [address for host in hosts.hosts.values() for address in host.addresses]


def answers(hosts, address: str) -> bool:
    try:
        return hosts.client(address).ping()
    except redis.ConnectionError:
        return False


def cluster_view(hosts) -> dict:
    """Every node's CLUSTER NODES without the fields that change by themselves (ping/pong times, link state)."""
    view = {}
    for address in addresses(hosts):
        lines = hosts.client(address).execute_command("CLUSTER", "NODES").decode().splitlines()
        view[address] = sorted(" ".join(fields[:4] + fields[6:7] + fields[8:])
                               for fields in (line.split() for line in lines))
    return view


def test_check_mode_on_new_hosts_starts_nothing(hosts):
    run = run_collection_playbook("deploy", hosts.inventory(), check=True)
    assert run.rc == 0, run.output
    assert not any(answers(hosts, address) for address in addresses(hosts))
    assert not any(os.path.exists(os.path.join(host.root, "data")) for host in hosts.hosts.values())
    assert "every node of a new cluster must be up" in run.output
    assert PASSWORD not in run.output


def test_deploy_starts_every_instance_and_forms_the_cluster_across_zones(hosts):
    run = run_collection_playbook("deploy", hosts.inventory())
    assert run.rc == 0, run.output
    assert all(recap["changed"] > 0 and recap["failed"] == 0 for recap in run.recap.values()), run.recap
    assert PASSWORD not in run.output
    zone_of = {address: host.zone for host in hosts.hosts.values() for address in host.addresses}
    ids = {hosts.client(address).execute_command("CLUSTER", "MYID").decode(): address for address in zone_of}
    lines = hosts.client(addresses(hosts)[0]).execute_command("CLUSTER", "NODES").decode().splitlines()
    masters = [fields for fields in map(str.split, lines) if "master" in fields[2]]
    replicas = [fields for fields in map(str.split, lines) if "slave" in fields[2]]
    assert (len(masters), len(replicas)) == (4, 5)
    for replica in replicas:
        assert zone_of[ids[replica[0]]] != zone_of[ids[replica[3]]], "a replica shares its master's zone"
    for address in zone_of:
        info = hosts.client(address).execute_command("CLUSTER", "INFO").decode()
        assert "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info


def test_second_deploy_changes_nothing(hosts):
    before = cluster_view(hosts)
    run = run_collection_playbook("deploy", hosts.inventory())
    assert run.rc == 0, run.output
    assert all(recap["changed"] == 0 for recap in run.recap.values()), run.output
    assert cluster_view(hosts) == before


def test_check_playbook_passes_on_a_healthy_cluster_and_lists_every_node(hosts):
    for check_mode in (False, True):
        run = run_collection_playbook("check", hosts.inventory(), check=check_mode)
        assert run.rc == 0, run.output
        assert all(recap["changed"] == 0 for recap in run.recap.values())
        for address in addresses(hosts):
            assert address in run.output


def test_check_playbook_fails_on_the_severities_asked_and_names_the_node(hosts):
    lines = hosts.client(addresses(hosts)[0]).execute_command("CLUSTER", "NODES").decode().splitlines()
    replica = next(fields[1].split("@")[0] for fields in map(str.split, lines) if "slave" in fields[2])
    hosts.kill(replica)
    assert run_collection_playbook("check", hosts.inventory()).rc == 0  # a dead replica is a warning
    run = run_collection_playbook("check", hosts.inventory(),
                                  extra_vars={"redis_cluster_check_fail_on": ["critical", "warning"]})
    assert run.rc != 0
    assert "redisops.cluster.fix" in run.output and replica in run.output
