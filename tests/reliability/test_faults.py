# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults during moves: while redis_cluster_rebalance, redis_cluster_reshard or redis_cluster_node (removing a master
that holds slots) moves slots, a node is killed (kill -9, then restarted) or stopped past the node timeout (SIGSTOP,
then SIGCONT): the move's source, its target or a bystander, once a seeded share of the run's slots is done. Then
redis_cluster_fix and the operation again, through ansible-playbook: the cluster ends healthy, every key stored before
the trial is there with its value, a further run of the operation changes nothing, no output holds a traceback, and
the online clients lose no acknowledged write unless a replica took over from a killed or stopped master (Redis
replicates asynchronously; those losses are counted). Nodes run with appendonly yes and appendfsync always. One
cluster per operation serves all its trials, healthy after each."""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest
from cluster_checks import (
    NodeWriter, Writer, all_keys, assert_healthy, cluster_nodes_fields, own_ranges, slot_runs, wait_for, write_keys,
)
from faults import (
    DURABLE, Trial, failed_message, finish, key_places, loss_report, no_failure_flags, parse_move, progress_lines,
    record, strike, tracebacks, wait_for_share,
)
from playbook_runs import run_tasks, start_module
from redis_harness import RedisNodes, form_cluster, wait_converged

KEYS = 20000
# Every cluster starts as 3 masters with a replica each; the removal trials' cluster has one node more, which joins as
# a fourth master with a few hundred slots before each trial and leaves during it.
NODES = {"rebalance": 6, "reshard": 6, "remove": 7}
# The move as users run it, with redis-cli's pipeline of 10 keys per MIGRATE rather than the default 1000, so that the
# run is still moving at the seeded point on a fast machine.
MOVE_ARGS = {"pipeline": 10, "wait_timeout": 30}
# Each client writes (and reads back) a key every 10 ms: enough to meet every fault, few enough that the keys of all
# the trials do not slow the later ones down.
WRITE_INTERVAL_S = 0.01
COMBINATIONS = [(fault, victim) for fault in ("kill", "stop") for victim in ("source", "target", "bystander")]
# The 11th trial of each operation: the last move's target killed past the node timeout once every slot is handed
# over, while the run still tells the other masters the owners (and, removing a master, forgets the node that left,
# which has just become that target's replica and may win its election).
LATE = ("kill", "last-target")
SAMPLE = {"reshard-kill-source-seed1", "reshard-stop-target-seed5"}  # one cluster for both
# 11 trials per operation: every fault on every victim, 4 of them twice, and LATE. REDISOPS_FAULT_TRIALS runs the
# first N of each operation's (and the sample's) instead: CI's share, within its time.
TRIALS_PER_OP = int(os.environ.get("REDISOPS_FAULT_TRIALS", "11"))
TRIALS = [trial for trial in (Trial(op, *(COMBINATIONS[index % len(COMBINATIONS)] if index < 10 else LATE),
                                    seed=index + 1)
                              for op in ("rebalance", "reshard", "remove") for index in range(11))
          if trial.seed <= TRIALS_PER_OP or trial.id in SAMPLE]


@pytest.fixture(scope="module")
def clusters():
    """op -> its cluster (RedisNodes, durable, KEYS keys written), made on first use, removed at the end."""
    made = {}

    def get(op: str) -> RedisNodes:
        if op not in made:
            made[op] = RedisNodes(NODES[op], extra_args=DURABLE)
            form_cluster(made[op].nodes[:6], replicas=1)
            write_keys(made[op], KEYS, prefix="base")
        return made[op]

    yield get
    for nodes in made.values():
        nodes.close()


def members(nodes) -> list:
    """The nodes that are part of the cluster (a removed node is reset: it knows only itself)."""
    return [node for node in nodes if len(node.cluster_nodes().splitlines()) > 1]


def slot_owners(node) -> dict:
    """{master address: its slots} of the masters that serve slots, in node's view."""
    owners = {}
    for fields in cluster_nodes_fields(node):
        slots = [slot for first, last in own_ranges(fields) for slot in range(first, last + 1)]
        if "master" in fields[2] and slots:
            owners[fields[1].split("@")[0]] = slots
    return owners


def login(node) -> dict:
    return {"login_host": node.host, "login_port": node.port}


def rebalance_args(nodes, draw) -> dict:
    """A little more weight (1.15 to 1.4) on the master with the fewest slots, so there is always something to move:
    500 to 1200 slots."""
    owners = slot_owners(members(nodes)[0])
    lightest = min(sorted(owners), key=lambda address: len(owners[address]))
    return dict(login(members(nodes)[0]), weights={lightest: round(1.15 + 0.25 * draw.amount, 2)})


def reshard_args(nodes, draw) -> dict:
    """200 to 800 slots of the other masters, from a seeded point of their slot order, onto a seeded master."""
    owners = slot_owners(members(nodes)[0])
    target = sorted(owners)[draw.pick % len(owners)]
    others = sorted(slot for address, slots in owners.items() if address != target for slot in slots)
    count = 200 + int(600 * draw.amount)
    start = draw.pick % len(others)
    chosen = (others[start:] + others[:start])[:count]
    return dict(login(members(nodes)[0]), to=target, slot_list=slot_runs(chosen))


def remove_args(nodes, draw) -> dict:
    """The master with the fewest slots (the one that joined for the trial) leaves: it drains first."""
    owners = slot_owners(members(nodes)[0])
    leaving = min(sorted(owners), key=lambda address: len(owners[address]))
    seed_node = next(node for node in members(nodes) if node.address != leaving)
    return dict(login(seed_node), node=leaving, state="absent")


def slots_of(slot_list) -> set:
    """The slots of first-last ranges."""
    return {slot for text in slot_list for slot in range(int(text.split("-")[0]), int(text.split("-")[-1]) + 1)}


def rebalance_done(nodes, args: dict) -> str:
    """What keeps the masters' slot counts off their weighted shares by more than the threshold (2 %), if anything."""
    owners = slot_owners(members(nodes)[0])
    weights = {address: args["weights"].get(address, 1) for address in owners}
    total = sum(weights.values())
    off = {address: len(slots) for address, slots in owners.items()
           if abs(len(slots) - 16384 * weights[address] / total) > 0.02 * 16384 * weights[address] / total + 1}
    return "slot counts off their shares: %s (weights %s)" % (off, weights) if off else ""


def reshard_done(nodes, args: dict) -> str:
    owners = slot_owners(members(nodes)[0])
    left = slots_of(args["slot_list"]) - set(owners.get(args["to"], ()))
    return "%d slot(s) not on %s, e.g. %s" % (len(left), args["to"], sorted(left)[:5]) if left else ""


def remove_done(nodes, args: dict) -> str:
    known = {fields[1].split("@")[0] for node in members(nodes) for fields in cluster_nodes_fields(node)}
    return "%s is still in the cluster" % args["node"] if args["node"] in known else ""


OPERATIONS = {
    "rebalance": ("redis_cluster_rebalance", rebalance_args, rebalance_done),
    "reshard": ("redis_cluster_reshard", reshard_args, reshard_done),
    "remove": ("redis_cluster_node", remove_args, remove_done),
}


def rejoin_removed(nodes, draw) -> None:
    """The node an earlier removal trial reset joins again as a master, with 200 to 600 slots of the others."""
    outside = [node for node in nodes if node not in members(nodes)]
    if not outside:
        return
    (joining,) = outside
    seed_node = members(nodes)[0]
    joins = dict(login(seed_node), node=joining.address, state="present", role="master")
    fills = dict(login(seed_node), to=joining.address, slots=200 + int(400 * draw.amount))
    run = run_tasks([{"redisops.cluster.redis_cluster_node": joins}, {"redisops.cluster.redis_cluster_reshard": fills}])
    for result in run.results:
        assert not result.get("failed"), result.get("msg")


def serving(nodes, address: str):
    """address if it is a master that serves slots, the master it replicates if it is a replica (a master that was
    failed over is a replica of the one that took its slots); None while it is neither (a failed-over master that
    has yet to learn it)."""
    fields_by_id = {fields[0]: fields for fields in cluster_nodes_fields(members(nodes)[0])}
    for fields in fields_by_id.values():
        if fields[1].split("@")[0] == address:
            if "slave" in fields[2]:
                return fields_by_id[fields[3]][1].split("@")[0]
            return address if own_ranges(fields) else None
    return None


def serving_when_settled(nodes, address: str) -> str:
    wait_for(lambda: serving(nodes, address) is not None, timeout=30, message="%s a master or a replica" % address)
    return serving(nodes, address)


def after_failover(nodes, args: dict) -> dict:
    """The operation's arguments as the operator gives them again: a master named that was failed over meanwhile is
    named by the master that took its slots (the modules refuse to weigh or fill a replica, naming the masters)."""
    renamed = dict(args)
    if "weights" in args:
        renamed["weights"] = {serving_when_settled(nodes, address): weight
                              for address, weight in args["weights"].items()}
    if "to" in args:
        renamed["to"] = serving_when_settled(nodes, args["to"])
    return renamed


def pick_victim(trial: Trial, draw, nodes, line: dict):
    """The harness node the fault hits, from the move the progress line names."""
    by_address = {node.address: node for node in nodes}
    source, target = parse_move(line["move"])
    if trial.victim == "source":
        return by_address[source]
    if trial.victim in ("target", "last-target"):
        return by_address[target]
    bystanders = [node for node in members(nodes) if node.address not in (source, target)]
    return bystanders[draw.pick % len(bystanders)]


def master_addresses(nodes) -> set:
    return {node.address for node in members(nodes) if node.call("ROLE")[0] == b"master"
            and slot_owners(node).get(node.address)}


@pytest.mark.parametrize("trial", [
    pytest.param(trial, id=trial.id, marks=[pytest.mark.sample] if trial.id in SAMPLE else []) for trial in TRIALS])
def test_fault_during_move(trial: Trial, clusters):
    started = time.monotonic()
    nodes = clusters(trial.op)
    draw = trial.draw()
    rejoin_removed(nodes, draw)
    wait_converged(members(nodes))
    assert_healthy(members(nodes)[0])
    module, make_args, undone = OPERATIONS[trial.op]
    args = dict(make_args(nodes, draw), **MOVE_ARGS)
    before = all_keys(nodes)
    places_before, owners_before = key_places(nodes), slot_owners(members(nodes)[0])
    masters_before = master_addresses(nodes)
    writers = [Writer(nodes, prefix="py-" + trial.id, interval=WRITE_INTERVAL_S),
               NodeWriter(nodes, prefix="io-" + trial.id, interval=WRITE_INTERVAL_S)]
    writing = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            progress = os.path.join(workdir, "progress.jsonl")
            proc = start_module(module, dict(args, progress_file=progress), workdir)
            # ansible-playbook takes a few seconds to reach the first move: the clients are at work by then.
            for writer in writers:
                writer.start()
                writing.append(writer)
            line = wait_for_share(progress, proc, draw.at_share)
            assert line is not None, "the run ended before %.0f%% of its slots: %s" % (
                100 * draw.at_share, finish(proc)[1])
            victim = pick_victim(trial, draw, nodes, line)
            victim_was_master = victim.call("ROLE")[0] == b"master"
            running_at_fault = proc.poll() is None
            strike(victim, trial.fault, draw.down_s)
            rc, output = finish(proc)
            slots_done_at_fault = line["slots_done"], line["slots_total"]
            slots_done_by_first_run = (progress_lines(progress) or [line])[-1]["slots_done"]
            first_moves = [progress_line["move"] for progress_line in progress_lines(progress)]
        assert tracebacks(output) == [], output
        assert "MODULE FAILURE" not in output, output
        first_message = failed_message(output)
        assert rc == 0 or first_message, "the interrupted run failed without a message:\n" + output
        wait_for(lambda: no_failure_flags(members(nodes)), timeout=60, message="every node reachable, no fail flags")
        # What an operator does next: repair, then the operation again, then once more to see it is done.
        args_again = after_failover(nodes, args)
        run = run_tasks([{"redisops.cluster.redis_cluster_fix": login(members(nodes)[0])},
                         {"redisops.cluster." + module: args_again}, {"redisops.cluster." + module: args_again}])
    finally:
        for writer in writers:
            if writer in writing or isinstance(writer, NodeWriter):
                writer.stop()
    fixed, rerun, again = run.results
    assert tracebacks(run.output, json.dumps(run.results)) == [], run.output
    assert not fixed.get("failed"), fixed.get("msg")
    assert not rerun.get("failed"), rerun.get("msg")
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False, again.get("plan")
    assert undone(nodes, args_again) == "", (undone(nodes, args_again), fixed.get("plan"), rerun.get("plan"))
    wait_converged(members(nodes))
    assert_healthy(members(nodes)[0])
    stored = all_keys(nodes)
    missing = sorted(key for key, value in before.items() if stored.get(key) != value)
    assert missing == [], "%d key(s) stored before the trial missing or changed, e.g. %s; victim %s, first run: %s; " \
        "fix: %s; rerun: %s\n%s" % (
            len(missing), missing[:5], victim.address, first_message or "ok", fixed.get("plan"), rerun.get("plan"),
            loss_report(nodes, missing, places_before, owners_before, slot_owners(members(nodes)[0]),
                        first_moves + (fixed.get("plan") or []) + (rerun.get("plan") or [])))
    failover = bool(master_addresses(nodes) - masters_before)
    lost = {writer.name_shown: sorted(key for key, value in writer.acknowledged.items() if stored.get(key) != value)
            for writer in writers}
    record(trial, {
        "op": trial.op, "fault": trial.fault, "victim": trial.victim, "seed": trial.seed,
        "victim_role": "master" if victim_was_master else "replica", "down_s": round(draw.down_s, 2),
        "at_slots": "%d/%d" % slots_done_at_fault, "running_at_fault": running_at_fault,
        "first_run_slots": slots_done_by_first_run,
        "first_run": "ok" if rc == 0 else "failed: " + first_message.splitlines()[0][:160],
        "fix_changed": fixed["changed"], "rerun_changed": rerun["changed"], "failover": failover,
        "fix_plan": fixed.get("plan"), "rerun_plan": rerun.get("plan"), "renamed": args_again != args,
        "keys_before": len(before), "acknowledged": {name: len(writer.acknowledged) for name, writer in
                                                     zip(lost, writers)},
        "client_errors": {writer.name_shown: len(writer.errors) for writer in writers},
        "lost": {name: len(keys) for name, keys in lost.items()}, "seconds": round(time.monotonic() - started, 1)})
    for name, keys in lost.items():
        assert failover or keys == [], "%s: %d acknowledged write(s) lost without a failover, e.g. %s" % (
            name, len(keys), keys[:5])
