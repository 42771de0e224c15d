# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check mode sends no command that writes or changes the cluster. For every mutating module and playbook the test
sets up a state where a real run would change something (the check run must say so), resets INFO commandstats on
every node, runs in check mode, and then reads every node's commandstats: any command Redis flags write, admin or
may_replicate (bar a short list of read-only admin ones) and any CLUSTER subcommand that is not a read fails the
test, named. Every node's CLUSTER NODES (without ping and pong times) and data set are compared too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
from typing import Callable

import pytest
from cluster_checks import changing_commands, masters, observed, owner_id, raw, reset_stats, write_keys
from playbook_runs import local_inventory, nodes_inventory, run_collection_playbook, run_tasks
from redis.crc import key_slot
from redis_harness import RedisNodes, form_cluster, made_in_temp_dir, wait_converged
from role_hosts import RoleHosts
from test_bad_input import DEBUG_ARGS, write_agent_facts

PASSWORD = "check-mode pässword"
KEYS = 2000
OPEN_TAG = "{open}"


class Site:
    """A 3 masters + 3 replicas cluster over three inventory hosts (zones a, b, c) with keys, and three empty
    nodes."""

    def __init__(self, root: str):
        self.root = root
        self.cluster = RedisNodes(6, password=PASSWORD, extra_args=DEBUG_ARGS)
        self.spares = RedisNodes(3, password=PASSWORD, extra_args=DEBUG_ARGS)
        form_cluster(self.cluster.nodes, replicas=1)
        write_keys(self.cluster.nodes, KEYS)
        write_keys(self.cluster.nodes, 20, prefix=OPEN_TAG)

    @property
    def all_nodes(self) -> list:
        return list(self.cluster) + list(self.spares)

    def masters(self) -> list:
        return masters(self.cluster.nodes)

    def replica(self):
        return next(node for node in self.cluster if node not in self.masters())

    def inventory(self, **groups) -> dict:
        """The cluster's hosts as the group redis_cluster, plus groups of further hosts ({group: {host: vars}})."""
        hosts = nodes_inventory(self.cluster.nodes)["all"]["children"]["redis_cluster"]["hosts"]
        return local_inventory(dict({"redis_cluster": hosts}, **groups), redis_cluster_login_password=PASSWORD)

    def spare_host(self, index: int = 0, zone: str = "d", **host_vars) -> dict:
        return {"host-" + zone: dict({"redis_cluster_address": "127.0.0.1", "redis_cluster_zone": zone,
                                      "redis_node_ports": [self.spares[index].port]}, **host_vars)}

    def close(self) -> None:
        self.cluster.close()
        self.spares.close()


@pytest.fixture(scope="module")
def site():
    with made_in_temp_dir(Site, "redisops-check-mode-") as made:
        yield made


# --- states where a real run would change something ------------------------------------------------------------------

@contextlib.contextmanager
def nothing(_site: Site):
    yield


def owner_and_other(site: Site, slot: int) -> tuple:
    """The master that serves slot, and another master."""
    source = next(node for node in site.masters() if node.node_id() == owner_id(site.cluster[0], slot))
    return source, next(node for node in site.masters() if node is not source)


@contextlib.contextmanager
def open_slot(site: Site):
    """A slot with keys left MIGRATING on its owner and IMPORTING on another master, as an interrupted move leaves it."""
    slot = key_slot(OPEN_TAG.encode())
    source, target = owner_and_other(site, slot)
    raw(target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()))
    raw(source, ("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id()))
    try:
        yield
    finally:
        raw(source, ("CLUSTER", "SETSLOT", slot, "STABLE"))
        raw(target, ("CLUSTER", "SETSLOT", slot, "STABLE"))


# --- how a case runs and what says that it would change something -------------------------------------------------

def module(name: str, **args) -> Callable[[Site], tuple]:
    """redisops.cluster.NAME in check mode; (would change, output)."""

    def run(site: Site) -> tuple:
        resolved = {key: value(site) if callable(value) else value for key, value in args.items()}
        resolved.setdefault("nodes", [site.cluster[0].address])
        resolved["login_password"] = PASSWORD
        done = run_tasks([{"redisops.cluster." + name: resolved}], check=True)
        result = done.result
        assert not result.get("failed"), done.output
        return bool(result.get("changed")) and bool(result.get("plan", True)), done.output

    return run


def playbook(name: str, inventory: Callable[[Site], dict], extra_vars=None, would=None) -> Callable[[Site], tuple]:
    """ansible-playbook redisops.cluster.NAME --check; (would change, output): a task reported changed, or the
    output holds would (a decision that check mode prints and stops at)."""

    def run(site: Site) -> tuple:
        resolved = {key: value(site) if callable(value) else value for key, value in (extra_vars or {}).items()}
        done = run_collection_playbook(name, inventory(site), extra_vars=resolved, check=True)
        assert done.rc == 0, done.output
        changed = sum(counts["changed"] for counts in done.recap.values())
        return (would in done.output) if would else changed > 0, done.output

    return run


def reconcile_inventory(site: Site) -> dict:
    """The cluster's hosts and a host whose instance is in no cluster, each with the facts its agent just wrote."""
    inventory = site.inventory()
    hosts = inventory["all"]["children"]["redis_cluster"]["hosts"]
    hosts.update(site.spare_host())
    for name, host in hosts.items():
        facts_dir = os.path.join(site.root, "facts", name)
        host["redis_cluster_agent_facts_dir"] = facts_dir
        write_agent_facts(site.root, facts_dir, host["redis_node_ports"], PASSWORD)
    inventory["all"]["vars"].update(redis_cluster_reconcile_refresh=False,
                                    redis_cluster_reconcile_history_dir=os.path.join(site.root, "history"))
    return inventory


@dataclasses.dataclass
class Case:
    id: str
    run: Callable[[Site], tuple]
    state: Callable = nothing
    sample: bool = False


def first_master(site: Site) -> str:
    return site.masters()[0].address


def spare(index: int) -> Callable[[Site], str]:
    return lambda site: site.spares[index].address


CASES = [
    Case("redis_cluster_create", module("redis_cluster_create", replicas=0,
                                        nodes=lambda site: [node.address for node in site.spares])),
    Case("redis_cluster_fix", module("redis_cluster_fix"), open_slot),
    Case("redis_cluster_rebalance", module("redis_cluster_rebalance", weights=lambda site: {first_master(site): 3})),
    Case("redis_cluster_reshard", module("redis_cluster_reshard", to=first_master, slots=500)),
    Case("redis_cluster_node-add-master", module("redis_cluster_node", node=spare(0), rebalance=True)),
    Case("redis_cluster_node-add-replica", module("redis_cluster_node", node=spare(0), role="replica")),
    Case("redis_cluster_node-remove-master",
         module("redis_cluster_node", node=first_master, state="absent"), sample=True),
    Case("redis_cluster_node-replace", module("redis_cluster_node", node=spare(0),
                                              replace=lambda site: site.replica().address)),
    Case("redis_cluster_failover", module("redis_cluster_failover", node=lambda site: site.replica().address)),
    Case("playbook-rebalance", playbook("rebalance", Site.inventory,
                                        {"redis_cluster_rebalance_weights": lambda site: {first_master(site): 3}})),
    Case("playbook-fix", playbook("fix", Site.inventory), open_slot, sample=True),
    Case("playbook-scale_out", playbook(
        "scale_out", lambda site: site.inventory(redis_cluster_new=site.spare_host()),
        {"redis_cluster_scale_out_group": "redis_cluster_new", "redis_cluster_scale_out_deploy": False})),
    # The harness runs the nodes outside systemd and the role's pid files: the stop play has nothing to stop.
    Case("playbook-scale_in", playbook("scale_in", Site.inventory,
                                       {"redis_cluster_scale_in_nodes": lambda site: [first_master(site)],
                                        "redis_cluster_scale_in_stop": False})),
    Case("playbook-replace_node", playbook(
        "replace_node", lambda site: site.inventory(spare=site.spare_host()),
        {"redis_cluster_replace_node_old": lambda site: site.replica().address,
         "redis_cluster_replace_node_new": spare(0)})),
    Case("playbook-rolling_restart", playbook("rolling_restart", Site.inventory, would="fail over")),
    Case("playbook-reconcile", playbook("reconcile", reconcile_inventory, would="add")),
]


def _marks(case: Case) -> list:
    return [pytest.mark.sample] if case.sample else []


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=_marks(case)) for case in CASES])
def test_check_mode_sends_no_changing_command(site, case):
    with case.state(site):
        before = observed(site.all_nodes)
        reset_stats(site.all_nodes)
        would_change, output = case.run(site)
        sent = changing_commands(site.all_nodes)
        after = observed(site.all_nodes)
    assert would_change, "the check run shows nothing to change, so it proves nothing:\n" + output
    assert sent == [], "check mode sent commands that write or change the cluster: %s" % sent
    assert after == before


def files_under(root: str) -> dict:
    """path -> sha256 of every file under root but the instances' logs (a log line is not a change)."""
    digests = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not name.endswith(".log") and os.path.isfile(path):
                with open(path, "rb") as handle:
                    digests[path] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def test_deploy_in_check_mode_changes_no_instance():
    """The deploy playbook in check mode over hosts it deployed, with a setting changed: it reports the change and
    the restart of every instance, and no instance receives a changing command or restarts, no file of the hosts changes, the cluster is as it was."""
    # DEBUG DIGEST compares the data before and after.
    with RoleHosts(password=PASSWORD, redis_node_extra_config={"enable-debug-command": "local"}) as role_hosts:
        for zone in "abc":
            role_hosts.add("redis_cluster", zone, 2)
        deploy_vars = {"redis_cluster_replicas": 1, "redis_cluster_deploy_agent": False}
        deployed = run_collection_playbook("deploy", role_hosts.inventory(), extra_vars=deploy_vars)
        assert deployed.rc == 0, deployed.output
        nodes = role_hosts.nodes(role_hosts.groups["redis_cluster"], PASSWORD)
        wait_converged(nodes)
        write_keys(nodes, KEYS)
        before = observed(nodes)
        run_ids = [node.client().info("server")["run_id"] for node in nodes]
        files = files_under(role_hosts.root)
        reset_stats(nodes)
        checked = run_collection_playbook("deploy", role_hosts.inventory(), check=True,
                                          extra_vars=dict(deploy_vars, redis_node_maxmemory="200mb"))
        assert checked.rc == 0, checked.output
        assert sum(counts["changed"] for counts in checked.recap.values()) > 0, checked.output
        # Each instance's restart is shown, none done.
        assert sorted(int(port) for port in re.findall(r"would restart the instance on port (\d+)", checked.output)) \
            == sorted(node.port for node in nodes), checked.output
        assert changing_commands(nodes) == []
        assert observed(nodes) == before
        assert [node.client().info("server")["run_id"] for node in nodes] == run_ids
        assert files_under(role_hosts.root) == files
