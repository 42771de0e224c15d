# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbook rolling_restart on 9 instances the roles deployed over 3 local hosts in 3 zones (3 masters with 2
replicas each): check mode restarts nothing, a shard without a synced replica stops it before any restart, and a real
run restarts every instance while clients write, losing no acknowledged write. The tests run in file order on one
deployment."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from cluster_checks import assert_clients_kept_working, client_keys, clients_writing, wait_for, write_keys
from playbook_runs import run_collection_playbook
from role_hosts import RoleHosts

PASSWORD = "rolling-restart-secret"
KEYS = 3000
# Extra variables of every run: a setting the role applies (with apply_role) that the restarts put into effect.
NEW_SETTINGS = {"redis_node_extra_config": {"repl-diskless-sync-delay": 0, "slowlog-max-len": 200}}
# One line of the order the playbook prints: what, and the node's host:port.
ORDER_LINE = re.compile(r'^\s+"(restart replica|restart master|restart|fail master|fail back: promote) (\S+?),? ',
                        re.MULTILINE)


@dataclasses.dataclass
class Seed:
    """Where the online clients start (cluster_checks' writers read host, port, password and tls)."""

    host: str
    port: int
    password: str
    tls: None = None


@pytest.fixture(scope="module")
def hosts():
    with RoleHosts(password=PASSWORD, node_timeout=2000,
                   # A full sync starts at once (Redis waits 5 s for more replicas by default).
                   redis_node_extra_config={"repl-diskless-sync-delay": 0}) as role_hosts:
        for zone in ("a", "b", "c"):
            role_hosts.add("redis_cluster", zone, 3)
        deployed = run_collection_playbook("deploy", role_hosts.inventory(),
                                           extra_vars={"redis_cluster_replicas": 2, "redis_cluster_deploy_agent": False})
        assert deployed.rc == 0, deployed.output
        wait_for(lambda: all(cluster_ok(role_hosts, address) for address in addresses(role_hosts)), timeout=60,
                 message="every node to report cluster_state:ok")
        yield role_hosts


def addresses(hosts: RoleHosts) -> list:
    return [address for host in hosts.hosts.values() for address in host.addresses]


def cluster_ok(hosts: RoleHosts, address: str) -> bool:
    return b"cluster_state:ok" in hosts.client(address).execute_command("CLUSTER", "INFO")


def run_ids(hosts: RoleHosts) -> dict:
    return {address: hosts.client(address).info("server")["run_id"] for address in addresses(hosts)}


def topology(hosts: RoleHosts) -> dict:
    """address -> (role, its master's address or '-', slots) in each node's own view."""
    lines = hosts.client(addresses(hosts)[0]).execute_command("CLUSTER", "NODES").decode().splitlines()
    fields = [line.split() for line in lines]
    by_id = {row[0]: row[1].split("@")[0] for row in fields}
    return {row[1].split("@")[0]: ("replica" if "slave" in row[2] else "master", by_id.get(row[3], "-"),
                                   tuple(row[8:])) for row in fields}


def cluster_nodes_without_timing(hosts: RoleHosts) -> dict:
    """Every node's CLUSTER NODES, without the fields that change by themselves (ping and pong times, link state)."""
    views = {}
    for address in addresses(hosts):
        lines = hosts.client(address).execute_command("CLUSTER", "NODES").decode().splitlines()
        views[address] = sorted(tuple(row[:4] + row[6:7] + row[8:]) for row in (line.split() for line in lines))
    return views


def key_counts(hosts: RoleHosts) -> dict:
    return {address: hosts.client(address).dbsize() for address in addresses(hosts)}


def stored_keys(hosts: RoleHosts) -> dict:
    """Every key -> value, read on the masters."""
    values = {}
    for address in addresses(hosts):
        conn = hosts.client(address)
        if conn.execute_command("ROLE")[0] == b"master":
            for key in conn.scan_iter(count=1000):
                values[key] = conn.get(key)
    return values


def master_links(hosts: RoleHosts, replicas) -> list:
    return [hosts.client(address).info("replication").get("master_link_status") for address in replicas]


def seed(hosts: RoleHosts) -> Seed:
    host, port = addresses(hosts)[0].rsplit(":", 1)
    return Seed(host, int(port), PASSWORD)


def slowlog_len(hosts: RoleHosts, address: str) -> str:
    return hosts.client(address).config_get("slowlog-max-len")["slowlog-max-len"]


def test_check_mode_shows_the_order_and_restarts_nothing(hosts):
    write_keys([seed(hosts)], KEYS)
    before = (run_ids(hosts), cluster_nodes_without_timing(hosts), key_counts(hosts))
    run = run_collection_playbook("rolling_restart", hosts.inventory(), check=True,
                                  extra_vars=dict(NEW_SETTINGS, redis_cluster_rolling_restart_apply_role=True))
    assert run.rc == 0, run.output
    assert PASSWORD not in run.output
    assert (run_ids(hosts), cluster_nodes_without_timing(hosts), key_counts(hosts)) == before
    # The order: the 6 replicas, then per shard a failover, the old master's restart and the failback.
    layout = topology(hosts)
    order = ORDER_LINE.findall(run.output)
    assert [what for what, _node in order] == ["restart replica"] * 6 + ["fail master", "restart",
                                                                         "fail back: promote"] * 3, run.output
    assert sorted(node for _what, node in order[:6]) == sorted(node for node in layout if layout[node][0] == "replica")
    shards = [order[index:index + 3] for index in range(6, 15, 3)]
    assert sorted(shard[0][1] for shard in shards) == sorted(node for node in layout if layout[node][0] == "master")
    assert all(len({node for _what, node in shard}) == 1 for shard in shards)
    # Each shard's failover as redis_cluster_failover plans it, and the settings the role would write.
    assert len(re.findall(r"fail over from master \S+ \(\w+\) \(\d+ bytes behind\)", run.output)) == 3, run.output
    assert re.search(r"TASK \[redisops\.cluster\.redis_node : Write each instance's settings\].*?changed: ",
                     run.output, re.DOTALL), run.output
    assert all(slowlog_len(hosts, address) == "128" for address in addresses(hosts))
    # --limit narrows the restarts to the instances of the hosts it names.
    limited = run_collection_playbook("rolling_restart", hosts.inventory(), check=True, limit="host-2")
    assert limited.rc == 0, limited.output
    assert sorted({node for _what, node in ORDER_LINE.findall(limited.output)}) == sorted(
        hosts.hosts["host-2"].addresses), limited.output
    assert (run_ids(hosts), cluster_nodes_without_timing(hosts), key_counts(hosts)) == before


def test_a_shard_without_a_synced_replica_stops_it_before_any_restart(hosts):
    layout = topology(hosts)
    master = sorted(address for address, (role, _m, _s) in layout.items() if role == "master")[1]
    replicas = [address for address, (role, of, _s) in layout.items() if of == master]
    assert len(replicas) == 2
    for address in replicas:
        conn = hosts.client(address)
        conn.config_set("masterauth", "not the password")
        conn.execute_command("CLIENT", "KILL", "TYPE", "master")
    try:
        wait_for(lambda: master_links(hosts, replicas) == ["down", "down"], message="both replicas' links down")
        before = (run_ids(hosts), cluster_nodes_without_timing(hosts), key_counts(hosts))
        run = run_collection_playbook("rolling_restart", hosts.inventory())
        assert run.rc != 0
        assert re.search(r"The rolling restart does not start, nothing was restarted:.*the shard of %s \(\d+ slots\) "
                         r"has no synced replica" % re.escape(master), run.output), run.output
        assert all("%s has master_link_status:down" % address in run.output for address in replicas)
        assert "redis_cluster_rolling_restart_allow_unprotected" in run.output
        assert all(counts["changed"] == 0 for counts in run.recap.values()), run.recap
        assert (run_ids(hosts), cluster_nodes_without_timing(hosts), key_counts(hosts)) == before
        # Accepting the window: that master would restart in place, without a failover (check mode shows it).
        run = run_collection_playbook("rolling_restart", hosts.inventory(), check=True,
                                      extra_vars={"redis_cluster_rolling_restart_allow_unprotected": True})
        assert run.rc == 0, run.output
        assert re.search(r"restart master %s \(\d+ slots, no failover\)" % re.escape(master), run.output), run.output
        assert "its master restarts in place, and its slots are not served meanwhile" in run.output
        assert "fail master %s" % master not in run.output
        assert (run_ids(hosts), cluster_nodes_without_timing(hosts), key_counts(hosts)) == before
    finally:
        for address in replicas:
            hosts.client(address).config_set("masterauth", PASSWORD)
    wait_for(lambda: master_links(hosts, replicas) == ["up", "up"], timeout=30, message="both replicas synced again")


def test_rolling_restart_while_clients_write(hosts):
    expected = stored_keys(hosts)
    assert len(client_keys(expected)) == KEYS
    layout, ids = topology(hosts), run_ids(hosts)
    started = time.monotonic()
    with clients_writing([seed(hosts)]) as writers:
        run = run_collection_playbook("rolling_restart", hosts.inventory(),
                                      extra_vars=dict(NEW_SETTINGS, redis_cluster_rolling_restart_apply_role=True))
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.output
    assert PASSWORD not in run.output
    assert all(counts["failed"] == 0 and counts["unreachable"] == 0 for counts in run.recap.values()), run.recap
    # Every instance restarted, with the settings the role wrote in effect.
    after = run_ids(hosts)
    assert [address for address in ids if after[address] == ids[address]] == []
    assert all(slowlog_len(hosts, address) == "200" for address in addresses(hosts))
    # The playbook checked the cluster after each of its 15 steps: every restart, failover and failback.
    checks = re.findall(r"cluster ok after '(restart|failover|failback) (\S+)'", run.output)
    restarted = [node for action, node in checks if action == "restart"]
    assert len(checks) == 15 and sorted(restarted) == sorted(addresses(hosts)), checks
    masters = sorted(address for address, (role, _m, _s) in layout.items() if role == "master")
    assert sorted(node for action, node in checks if action == "failover") == masters
    # Failback: every master, its slots and its replicas as before.
    wait_for(lambda: topology(hosts) == layout, timeout=30, message="every node to agree on the placement")
    stored = stored_keys(hosts)
    assert client_keys(stored) == client_keys(expected)
    assert_clients_kept_working(writers, stored)
    print("rolling restart of %d nodes: %.1f s (playbook run, clients writing)" % (len(ids), elapsed))
