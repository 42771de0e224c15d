# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input to every module, both roles and the playbooks: each case fails, its message names the problem and what
to do, no Python traceback shows, and every node's CLUSTER NODES (without ping and pong times) and keys are what they
were. The cases share one site: a 3 masters + 3 replicas cluster with a password, ACL users and keys, empty nodes,
a node outside cluster mode, a node holding keys, a one-node cluster of its own and a TLS node.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from typing import Callable

import pytest
from cluster_checks import masters, observed, write_keys
from playbook_runs import ROOT, nodes_inventory, run_collection_playbook, run_roles, run_tasks
from redis_harness import RedisNodes, TlsFiles, form_cluster, free_ports, made_in_temp_dir, port_free, wait_converged
from role_hosts import BUS_OFFSET, age_facts, free_instance_ports

PASSWORD = "bad-input pässword"
OPS_USER, OPS_PASSWORD = "ops", "ops pässword"
NO_FAILOVER_USER = "nofailover"
KEYS = 600
VALUE_SIZE = 1024
DEBUG_ARGS = ("--enable-debug-command", "local")  # DEBUG DIGEST compares every node's data before and after
AGENT = os.path.join(ROOT, "roles", "redis_cluster_agent", "files", "redis_cluster_agent.py")


@dataclasses.dataclass
class Outcome:
    failed: bool
    message: str  # what the user reads: the failed task's msg (or the play's output for playbooks and roles)
    output: str  # everything ansible-playbook printed, and the result as JSON for a module


class Site:
    """The nodes every case runs against; observe() covers all of them."""

    def __init__(self, root: str):
        self.root = root
        self.groups = []
        self.cluster = self._start(6)
        form_cluster(self.cluster.nodes, replicas=1)
        write_keys(self.cluster.nodes, KEYS, size=VALUE_SIZE)
        for node in self.cluster:
            node.call("ACL", "SETUSER", OPS_USER, "on", ">" + OPS_PASSWORD, "~*", "&*", "+@all")
            node.call("ACL", "SETUSER", NO_FAILOVER_USER, "on", ">" + OPS_PASSWORD, "~*", "&*", "+@all",
                      "-cluster|failover")
        self.empty = self._start(3)
        self.plain = self._start(1, cluster=False)[0]
        self.keyed = self._start(1)[0]
        # A key in a node that serves no slot, as a node once used alone and then emptied of slots keeps it.
        self.keyed.call("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_converged([self.keyed])
        self.keyed.call("SET", "left-behind", "value")
        self.keyed.call("CLUSTER", "DELSLOTSRANGE", 0, 16383)
        self.solo = self._start(1)[0]
        self.solo.call("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_converged([self.solo])
        self.solo.call("SET", "solo-key", "value")
        self.tls = self._start(1, tls=TlsFiles(os.path.join(root, "tls")))[0]

    def _start(self, count: int, **kwargs) -> RedisNodes:
        nodes = RedisNodes(count, password=PASSWORD, extra_args=DEBUG_ARGS, **kwargs)
        self.groups.append(nodes)
        return nodes

    @property
    def all_nodes(self) -> list:
        return [node for group in self.groups for node in group]

    def observe(self) -> dict:
        return observed(self.all_nodes)

    def seed(self) -> list:
        return [self.cluster[0].address]

    def close(self) -> None:
        for group in self.groups:
            group.close()


@pytest.fixture(scope="module")
def site():
    with made_in_temp_dir(Site, "redisops-bad-input-") as made:
        yield made


# --- how a case runs ------------------------------------------------------------------------------------------------

def module(name: str, **args) -> Callable[[Site], Outcome]:
    """Run redisops.cluster.NAME with args (callables of the site are called) and the cluster's password unless
    the case sets its own credentials."""

    def run(site: Site) -> Outcome:
        resolved = {key: value(site) if callable(value) else value for key, value in args.items()}
        if "login_user" not in resolved and "login_password" not in resolved:
            resolved["login_password"] = PASSWORD
        resolved.setdefault("nodes", site.seed())
        resolved.setdefault("connect_timeout", 1.0)
        done = run_tasks([{"redisops.cluster." + name: resolved}])
        result = done.result
        return Outcome(bool(result.get("failed")), result.get("msg", ""), done.output + json.dumps(result))

    return run


def playbook(name: str, inventory: Callable[[Site], dict], extra_vars=None) -> Callable[[Site], Outcome]:
    def run(site: Site) -> Outcome:
        done = run_collection_playbook(name, inventory(site), extra_vars=extra_vars)
        return Outcome(done.rc != 0, done.output, done.output)

    return run


def roles(names, **variables) -> Callable[[Site], Outcome]:
    """Apply the roles on this host with variables over the local defaults; no instance may start."""

    def run(site: Site) -> Outcome:
        resolved = {name: value(site) if callable(value) else value for name, value in variables.items()}
        applied = dict(role_variables(site.root), **resolved)
        done = run_roles(names, applied)
        started = [port for port in applied["redis_node_ports"] if not port_free(port)]
        assert started == [], "ports listened on after a refused run: %s" % started
        return Outcome(done.rc != 0, done.output, done.output)

    return run


def cluster_inventory(site: Site, **all_vars) -> dict:
    return nodes_inventory(site.cluster.nodes, redis_cluster_login_password=PASSWORD, **all_vars)


def role_variables(root: str) -> dict:
    """The roles as the local tests apply them: plain processes and agents under root, no packages."""
    return {
        "redis_node_ports": free_instance_ports(1), "redis_node_supervisor": "none", "redis_node_manage_package": False, "redis_node_bind": "127.0.0.1",
        "redis_node_password": PASSWORD, "redis_node_bus_port_offset": BUS_OFFSET,
        "redis_node_data_dir": os.path.join(root, "role", "data"), "redis_node_conf_dir": os.path.join(root, "role", "conf"),
        "redis_node_log_dir": os.path.join(root, "role", "log"), "redis_node_run_dir": os.path.join(root, "role", "run"),
        "redis_cluster_agent_supervisor": "none", "redis_cluster_agent_manage_packages": False,
        "redis_cluster_agent_python": sys.executable, "redis_cluster_agent_lib_dir": os.path.join(root, "role", "agent"),
        "redis_cluster_agent_conf_dir": os.path.join(root, "role", "agent-conf"),
        "redis_cluster_agent_facts_dir": os.path.join(root, "role", "facts.d"),
    }


# --- states a case needs (made before the cluster is observed, undone after) ---------------------------------------

def with_receivers_full(run: Callable[[Site], Outcome]) -> Callable[[Site], Outcome]:
    """maxmemory on every master but the first just above what it uses, so that the first master's keys do not fit."""

    def wrapped(site: Site) -> Outcome:
        receivers = [node for node in masters(site.cluster.nodes) if node is not site.cluster[0]]
        try:
            for node in receivers:
                used = node.client().info("memory")["used_memory"]
                node.call("CONFIG", "SET", "maxmemory", used + 64 * 1024)
            return run(site)
        finally:
            for node in receivers:
                node.call("CONFIG", "SET", "maxmemory", 0)

    return wrapped


def stale_facts_inventory(site: Site) -> dict:
    """The cluster's hosts, each with the facts its agent wrote, one host's ten minutes old."""
    inventory = cluster_inventory(site, redis_cluster_reconcile_refresh=False,
                                  redis_cluster_reconcile_history_dir=os.path.join(site.root, "history"))
    hosts = inventory["all"]["children"]["redis_cluster"]["hosts"]
    for name, host in hosts.items():
        facts_dir = os.path.join(site.root, "facts", name)
        host["redis_cluster_agent_facts_dir"] = facts_dir
        write_agent_facts(site.root, facts_dir, host["redis_node_ports"])
    age_facts(os.path.join(hosts["host-b"]["redis_cluster_agent_facts_dir"], "redis_cluster.fact"), 600)
    return inventory


def write_agent_facts(root: str, facts_dir: str, ports: list, password: str = PASSWORD) -> None:
    """Run the agent program of the role redis_cluster_agent once over ports, as its timer would."""
    lib = os.path.join(root, "agent-lib")
    if not os.path.isdir(lib):
        os.makedirs(lib)
        shutil.copy(AGENT, lib)
        os.symlink(os.path.join(ROOT, "plugins", "module_utils"), os.path.join(lib, "redisops_cluster"))
    os.makedirs(facts_dir, exist_ok=True)
    password_file, settings = os.path.join(facts_dir, "password"), os.path.join(facts_dir, "agent.json")
    with open(password_file, "w", encoding="utf-8") as handle:
        handle.write(password)
    with open(settings, "w") as handle:
        json.dump({"ports": ports, "host": "127.0.0.1", "interval": 30, "password_file": password_file,
                   "facts_file": os.path.join(facts_dir, "redis_cluster.fact")}, handle)
    subprocess.run([sys.executable, "-I", os.path.join(lib, "redis_cluster_agent.py"), settings], check=True,
                   timeout=60, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ports_on_each_others_bus(port: int) -> list:
    return [port, port + BUS_OFFSET]


def unused_address(_site: Site) -> str:
    return "127.0.0.1:%d" % free_ports(1)[0]


def address(pick: Callable[[Site], object]) -> Callable[[Site], str]:
    return lambda site: pick(site).address


def addresses(pick: Callable[[Site], list]) -> Callable[[Site], list]:
    return lambda site: [node.address for node in pick(site)]


def master_address(site: Site) -> str:
    return masters(site.cluster.nodes)[0].address


def replica_address(site: Site) -> str:
    return next(node.address for node in site.cluster if node not in masters(site.cluster.nodes))


# --- the cases ------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    id: str
    entry: str  # what the user ran
    run: Callable[[Site], Outcome]
    words: tuple  # each must appear in the message (case-insensitive): the problem, and what to do
    sample: bool = False


CASES = [
    # connection
    Case("unreachable-seed", "redis_cluster_facts", module("redis_cluster_facts", nodes=lambda site: [unused_address(site)]),
         ("127.0.0.1:", "connection refused")),
    Case("wrong-password", "redis_cluster_facts", module("redis_cluster_facts", login_password="not the password"),
         ("authentication", "login_password")),
    Case("wrong-acl-user", "redis_cluster_facts",
         module("redis_cluster_facts", login_user="ghost", login_password=OPS_PASSWORD), ("authentication", "login_user")),
    Case("acl-user-without-cluster-failover", "redis_cluster_failover",
         module("redis_cluster_failover", login_user=NO_FAILOVER_USER, login_password=OPS_PASSWORD, node=replica_address),
         ("cluster|failover", "ACL SETUSER")),
    Case("tls-client-to-plain-node", "redis_cluster_facts", module("redis_cluster_facts", tls=True, validate_certs=False),
         ("tls",)),
    Case("plain-client-to-tls-node", "redis_cluster_facts", module("redis_cluster_facts", nodes=addresses(lambda s: [s.tls])),
         ("tls",)),
    # create
    Case("create-node-not-in-cluster-mode", "redis_cluster_create",
         module("redis_cluster_create", replicas=0, nodes=addresses(lambda s: [s.plain, s.empty[0], s.empty[1], s.empty[2]])),
         ("cluster mode", "cluster-enabled")),
    Case("create-node-holding-keys", "redis_cluster_create",
         module("redis_cluster_create", replicas=0, nodes=addresses(lambda s: [s.keyed, s.empty[0], s.empty[1]])),
         ("key(s)", "flushall")),
    Case("create-node-of-another-cluster", "redis_cluster_create",
         module("redis_cluster_create", replicas=0, nodes=addresses(lambda s: [s.cluster[0], s.empty[0], s.empty[1]])),
         ("another cluster", "cluster reset")),
    Case("create-duplicate-nodes", "redis_cluster_create",
         module("redis_cluster_create", replicas=0, nodes=addresses(lambda s: [s.empty[0], s.empty[0], s.empty[1], s.empty[2]])),
         ("more than once", "nodes")),
    Case("create-too-few-nodes-for-replicas", "redis_cluster_create",
         module("redis_cluster_create", replicas=1, nodes=addresses(lambda s: list(s.empty))),
         ("3 node(s)", "at least 6")),
    # rebalance
    Case("rebalance-negative-weight", "redis_cluster_rebalance",
         module("redis_cluster_rebalance", weights=lambda site: {master_address(site): -1}), ("weights", "-1"),
         sample=True),
    Case("rebalance-weight-of-unknown-node", "redis_cluster_rebalance",
         module("redis_cluster_rebalance", weights={"127.0.0.1:1": 2}), ("weights", "127.0.0.1:1")),
    Case("rebalance-all-weights-zero", "redis_cluster_rebalance",
         module("redis_cluster_rebalance", weights=lambda site: {node.address: 0 for node in masters(site.cluster.nodes)}),
         ("weighs 0", "weight above 0")),
    Case("rebalance-stale-expect-state-id", "redis_cluster_rebalance",
         module("redis_cluster_rebalance", weights=lambda site: {master_address(site): 3}, expect_state_id="0123456789abcdef"),
         ("expect_state_id", "check mode")),
    # reshard
    Case("reshard-unknown-target-id", "redis_cluster_reshard",
         module("redis_cluster_reshard", to="0123456789abcdef0123", slots=10), ("0123456789abcdef0123",)),
    Case("reshard-slots-and-slot-list", "redis_cluster_reshard",
         module("redis_cluster_reshard", to=master_address, slots=10, slot_list=["1-10"]), ("slots", "slot_list")),
    Case("reshard-slot-out-of-range", "redis_cluster_reshard",
         module("redis_cluster_reshard", to=master_address, slot_list=["16384"]), ("16384", "slot_list")),
    # node
    Case("add-node-not-in-cluster-mode", "redis_cluster_node", module("redis_cluster_node", node=address(lambda s: s.plain)),
         ("cluster mode", "cluster-enabled")),
    Case("add-node-holding-keys", "redis_cluster_node", module("redis_cluster_node", node=address(lambda s: s.keyed)),
         ("key(s)", "flushall")),
    Case("add-node-of-another-cluster", "redis_cluster_node", module("redis_cluster_node", node=address(lambda s: s.solo)),
         ("another cluster",)),
    Case("remove-the-last-master", "redis_cluster_node",
         module("redis_cluster_node", nodes=addresses(lambda s: [s.solo]), node=address(lambda s: s.solo), state="absent"),
         ("last master", "add a master")),
    Case("remove-node-by-too-short-id", "redis_cluster_node",
         module("redis_cluster_node", node="0123abc", state="absent"), ("0123abc", "host:port", "8 to 40 hex digits")),
    Case("drain-into-too-little-memory", "redis_cluster_node",
         with_receivers_full(module("redis_cluster_node", node=address(lambda s: s.cluster[0]), state="absent")),
         ("maxmemory",)),
    Case("replace-with-a-node-holding-keys", "redis_cluster_node",
         module("redis_cluster_node", node=address(lambda s: s.keyed), replace=replica_address), ("key(s)", "flushall")),
    Case("add-replica-of-unknown-master", "redis_cluster_node",
         module("redis_cluster_node", node=address(lambda s: s.empty[0]), role="replica", master="127.0.0.1:1"),
         ("127.0.0.1:1", "master")),
    # failover
    Case("failover-unknown-node", "redis_cluster_failover", module("redis_cluster_failover", node="0123456789abcdef"),
         ("0123456789abcdef",)),
    Case("failover-node-and-master", "redis_cluster_failover",
         module("redis_cluster_failover", node=replica_address, master=master_address), ("node", "master")),
    # fix
    Case("fix-pipeline-zero", "redis_cluster_fix", module("redis_cluster_fix", pipeline=0), ("pipeline",)),
    # roles
    Case("role-node-bad-supervisor", "role redis_node", roles(["redis_node"], redis_node_supervisor="runit"),
         ("redis_node_supervisor", "runit", "systemd")),
    Case("role-node-duplicate-ports", "role redis_node",
         roles(["redis_node"], redis_node_ports=lambda _site: free_instance_ports(1) * 2),
         ("redis_node_ports", "each port once"), sample=True),
    Case("role-node-port-is-a-bus-port", "role redis_node",
         roles(["redis_node"], redis_node_ports=lambda _site: ports_on_each_others_bus(free_instance_ports(1)[0])),
         ("redis_node_ports", "bus port")),
    Case("role-agent-bad-supervisor", "role redis_cluster_agent",
         roles(["redis_cluster_agent"], redis_cluster_agent_supervisor="cron", redis_cluster_agent_ports=[6379]),
         ("redis_cluster_agent_supervisor", "cron")),
    Case("role-agent-ports-not-numbers", "role redis_cluster_agent",
         roles(["redis_cluster_agent"], redis_cluster_agent_ports=["six"]), ("redis_cluster_agent_ports",)),
    # playbooks
    Case("playbook-rebalance-bad-threshold", "playbook rebalance",
         playbook("rebalance", cluster_inventory, {"redis_cluster_rebalance_threshold": -5}),
         ("redis_cluster_rebalance_threshold", "-5")),
    Case("playbook-fix-pipeline-zero", "playbook fix", playbook("fix", cluster_inventory, {"redis_cluster_fix_pipeline": 0}),
         ("redis_cluster_fix_pipeline",), sample=True),
    Case("playbook-replace-node-missing-variables", "playbook replace_node", playbook("replace_node", cluster_inventory),
         ("redis_cluster_replace_node_old",)),
    Case("playbook-scale-in-group-without-hosts", "playbook scale_in",
         playbook("scale_in", cluster_inventory, {"redis_cluster_scale_in_group": "nosuchgroup"}),
         ("redis_cluster_scale_in_group", "nosuchgroup")),
    Case("playbook-scale-out-empty-group", "playbook scale_out",
         playbook("scale_out", cluster_inventory, {"redis_cluster_scale_out_deploy": False}),
         ("redis_cluster_scale_out_group",)),
    Case("playbook-reconcile-stale-facts", "playbook reconcile", playbook("reconcile", stale_facts_inventory),
         ("host-b: facts collected", "more than 3 intervals", "redis-cluster-agent.timer")),
    Case("playbook-rolling-restart-bad-timeout", "playbook rolling_restart",
         playbook("rolling_restart", cluster_inventory, {"redis_cluster_rolling_restart_timeout": "soon"}),
         ("redis_cluster_rolling_restart_timeout",)),
]


def _marks(case: Case) -> list:
    return [pytest.mark.sample] if case.sample else []


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=_marks(case)) for case in CASES])
def test_bad_input_is_refused_and_changes_nothing(site, case):
    before = site.observe()
    outcome = case.run(site)
    assert outcome.failed, outcome.output
    missing = [word for word in case.words if word.lower() not in outcome.message.lower()]
    assert missing == [], "message lacks %s: %s" % (missing, outcome.message)
    # A module that crashed shows MODULE FAILURE and its stderr; Ansible's "exception" field holds a traceback only
    # for a crash (else "(traceback unavailable)").
    for crash in ("Traceback (most recent call last)", "MODULE FAILURE", '"module_stderr"'):
        assert crash not in outcome.output, outcome.output
    assert site.observe() == before
    record_message(case, outcome)


def record_message(case: Case, outcome: Outcome) -> None:
    """With REDISOPS_BAD_INPUT_MESSAGES set, append the case and the line of its message that names the problem (the
    table in docs/reliability.md is made from these)."""
    path = os.environ.get("REDISOPS_BAD_INPUT_MESSAGES")
    if not path:
        return
    line = next(line.strip() for line in outcome.message.splitlines() if case.words[0].lower() in line.lower())
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"case": case.id, "entry": case.entry, "message": line}) + "\n")
