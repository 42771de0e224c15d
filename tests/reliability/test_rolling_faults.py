# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults during a rolling restart: while the rolling_restart playbook restarts the instances of a site the roles
deployed, once a seeded number of them has restarted, an instance is killed (kill -9, then started again with the
role's command line) or stopped past the node timeout (SIGSTOP, then SIGCONT): the instance restarted last (still
syncing), a master not yet restarted, or a replica. Then, as an operator would, redis_cluster_fix and the playbook
again: the second run succeeds and restarts every instance, the cluster ends healthy, every key stored before the
trial is there with its value, no output holds a traceback, the interrupted run succeeded or failed with a message,
and the online clients lose no acknowledged write unless a replica took over without a coordinated failover (those
losses are counted). Instances run with appendonly yes and appendfsync always. One site serves all the trials,
healthy after each."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import pytest
import redis
from cluster_checks import NodeWriter, Writer, all_keys, assert_healthy, wait_for, write_keys
from faults import (
    Trial, failed_message, finish, log_sizes, no_failure_flags, record, run_id, strike, tracebacks,
    unplanned_promotions, wait_for_restarts,
)
from playbook_runs import run_collection_playbook, run_tasks, start_collection_playbook
from redis_harness import wait_converged
from role_hosts import RoleHosts, RoleInstance

PASSWORD = "rolling-faults-secret"
KEYS = 5000
# Each client writes (and reads back) a key every 10 ms, from before the first restart to the end of the second run.
WRITE_INTERVAL_S = 0.01
# Each step of the playbook may take this long to leave the cluster ok (the default, 900 s, would let a stuck run
# outlast the test's own patience).
RUN_VARS = {"redis_cluster_rolling_restart_timeout": 120}
RUN_TIMEOUT_S = 600
# Modules go to the hosts' Python over a pipe rather than as files: fewer processes per task on a busy machine.
PIPELINING = {"ANSIBLE_PIPELINING": "1"}
COMBINATIONS = [(fault, victim) for fault in ("kill", "stop") for victim in ("syncing", "master", "bystander")]
SAMPLE: set = set()  # none: the shortest trial took 88 s, over the sample's 60 s
# 10 trials: every fault on every victim, 4 of them twice. REDISOPS_ROLLING_FAULT_TRIALS (else REDISOPS_FAULT_TRIALS)
# runs the first N instead: CI's share. Each trial is two whole rolling restarts, so CI runs fewer of these.
TRIAL_COUNT = int(os.environ.get("REDISOPS_ROLLING_FAULT_TRIALS", os.environ.get("REDISOPS_FAULT_TRIALS", "10")))
TRIALS = [Trial("restart", *COMBINATIONS[index % len(COMBINATIONS)], seed=index + 1) for index in range(10)
          ][:TRIAL_COUNT]


@dataclasses.dataclass
class Site:
    hosts: RoleHosts
    nodes: list


@pytest.fixture(scope="module")
def site():
    """3 hosts in 3 zones with 2 instances each (3 masters, 3 replicas), durable, KEYS keys written."""
    with RoleHosts(password=PASSWORD, node_timeout=2000, redis_node_appendonly=True,
                   # A full sync starts at once (Redis waits 5 s for more replicas by default).
                   redis_node_extra_config={"appendfsync": "always", "repl-diskless-sync-delay": 0}) as hosts:
        for zone in ("a", "b", "c"):
            hosts.add("redis_cluster", zone, 2)
        deployed = run_collection_playbook("deploy", hosts.inventory(),
                                           extra_vars={"redis_cluster_replicas": 1, "redis_cluster_deploy_agent": False})
        assert deployed.rc == 0, deployed.output
        nodes = [RoleInstance(host, port, PASSWORD) for host in hosts.hosts.values() for port in host.ports]
        wait_converged(nodes, timeout=60)
        write_keys(nodes, KEYS, prefix="base")
        yield Site(hosts, nodes)


def role(node) -> str | None:
    """master or replica; None while the node does not answer."""
    try:
        return "master" if node.call("ROLE")[0] == b"master" else "replica"
    except redis.RedisError:
        return None


def replicas_synced(nodes) -> bool:
    """Every replica's link to its master is up, with no sync in progress (the playbook's gate)."""
    for node in nodes:
        if role(node) == "replica":
            replication = node.client().info("replication")
            if replication.get("master_link_status") != "up" or replication.get("master_sync_in_progress"):
                return False
    return True


def wait_settled(nodes) -> None:
    """What an operator checks before a rolling restart: no node flagged failing, every node ok and agreeing,
    every replica synced."""
    wait_for(lambda: no_failure_flags(nodes), timeout=60, message="every node reachable, no fail flags")
    wait_converged(nodes, timeout=60)
    wait_for(lambda: replicas_synced(nodes), timeout=60, message="every replica synced")


def run_ids(nodes) -> dict:
    return {node.address: run_id(node) for node in nodes}


def pick_victim(trial: Trial, draw, nodes, restarted: list):
    """The node the fault hits: the one restarted last, a master not yet restarted, or a replica other than the one
    restarted last."""
    by_address = {node.address: node for node in nodes}
    if trial.victim == "syncing":
        return by_address[restarted[-1]]
    roles = {node.address: role(node) for node in nodes}
    if trial.victim == "master":
        candidates = [address for address in sorted(by_address)
                      if address not in restarted and roles[address] == "master"]
    else:
        candidates = [address for address in sorted(by_address)
                      if address != restarted[-1] and roles[address] == "replica"]
    assert candidates, "no %s to strike after %s restarted (roles %s)" % (trial.victim, restarted, roles)
    return by_address[candidates[draw.pick % len(candidates)]]


@pytest.mark.parametrize("trial", [
    pytest.param(trial, id=trial.id, marks=[pytest.mark.sample] if trial.id in SAMPLE else []) for trial in TRIALS])
def test_fault_during_rolling_restart(trial: Trial, site: Site):
    started = time.monotonic()
    nodes, draw = site.nodes, trial.draw()
    # 1 to 4 of the 6 instances: a master not yet restarted is left at every point.
    restarts_before_fault = max(1, round(draw.at_share * len(nodes)))
    wait_settled(nodes)
    assert_healthy(nodes[0])
    before = all_keys(nodes)
    logs_from, ids_before = log_sizes(nodes), run_ids(nodes)
    writers = [Writer(nodes, prefix="py-" + trial.id, interval=WRITE_INTERVAL_S),
               NodeWriter(nodes, prefix="io-" + trial.id, interval=WRITE_INTERVAL_S)]
    writing = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            run_started = time.monotonic()
            proc = start_collection_playbook("rolling_restart", site.hosts.inventory(), workdir, RUN_VARS,
                                             env=PIPELINING)
            # ansible-playbook takes seconds to reach the first restart: the clients are at work by then.
            for writer in writers:
                writer.start()
                writing.append(writer)
            restarted = wait_for_restarts(nodes, ids_before, restarts_before_fault, proc)
            assert restarted is not None, "the run ended before %d restart(s): %s" % (
                restarts_before_fault, finish(proc)[1])
            victim = pick_victim(trial, draw, nodes, restarted)
            victim_role = role(victim)
            strike(victim, trial.fault, draw.down_s)
            fault_at = time.monotonic() - run_started
            rc, output = finish(proc, timeout=RUN_TIMEOUT_S)
            first_run_s = time.monotonic() - run_started
        assert tracebacks(output) == [], output
        assert "MODULE FAILURE" not in output, output
        first_message = failed_message(output)
        assert rc == 0 or first_message, "the interrupted run failed without a message:\n" + output
        # What an operator does next: repair, wait for the cluster to settle, and the rolling restart again.
        wait_for(lambda: no_failure_flags(nodes), timeout=60, message="every node reachable, no fail flags")
        fixed = run_tasks([{"redisops.cluster.redis_cluster_fix": {
            "login_host": nodes[0].host, "login_port": nodes[0].port, "login_password": PASSWORD}}], env=PIPELINING)
        wait_settled(nodes)
        ids_again, second_started = run_ids(nodes), time.monotonic()
        again = run_collection_playbook("rolling_restart", site.hosts.inventory(), extra_vars=RUN_VARS,
                                        env=PIPELINING, timeout=RUN_TIMEOUT_S)
        second_run_s = time.monotonic() - second_started
    finally:
        for writer in writers:
            if writer in writing or isinstance(writer, NodeWriter):
                writer.stop()
    assert tracebacks(fixed.output, again.output) == [], fixed.output + again.output
    assert "MODULE FAILURE" not in fixed.output + again.output, fixed.output + again.output
    assert not fixed.result.get("failed"), fixed.result.get("msg")
    assert again.rc == 0, again.output
    assert [address for address, ids in run_ids(nodes).items() if ids == ids_again[address]] == [], again.output
    wait_settled(nodes)
    assert_healthy(nodes[0])
    stored = all_keys(nodes)
    missing = sorted(key for key, value in before.items() if stored.get(key) != value)
    assert missing == [], "%d key(s) stored before the trial missing or changed, e.g. %s; victim %s, first run: %s" % (
        len(missing), missing[:5], victim.address, first_message or "ok")
    promotions = unplanned_promotions(nodes, logs_from)
    lost = {writer.name_shown: sorted(key for key, value in writer.acknowledged.items() if stored.get(key) != value)
            for writer in writers}
    record(trial, {
        "op": trial.op, "fault": trial.fault, "victim": trial.victim, "seed": trial.seed, "victim_role": victim_role,
        "down_s": round(draw.down_s, 2), "after_restarts": len(restarted), "fault_at_s": round(fault_at, 1),
        "first_run_s": round(first_run_s, 1), "second_run_s": round(second_run_s, 1),
        "first_run": "ok" if rc == 0 else "failed: " + first_message.splitlines()[0][:200],
        "fix_changed": fixed.result["changed"], "fix_plan": fixed.result.get("plan"),
        "failover": bool(promotions), "promotions": promotions, "keys_before": len(before),
        "acknowledged": {name: len(writer.acknowledged) for name, writer in zip(lost, writers)},
        "client_errors": {writer.name_shown: len(writer.errors) for writer in writers},
        "lost": {name: len(keys) for name, keys in lost.items()}, "seconds": round(time.monotonic() - started, 1)})
    for name, keys in lost.items():
        assert promotions or keys == [], "%s: %d acknowledged write(s) lost without a failover, e.g. %s" % (
            name, len(keys), keys[:5])
