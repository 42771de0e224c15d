# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_rebalance and redis_cluster_reshard on real clusters: shares, keys, online clients, interruptions."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from playbook_runs import run_module, run_tasks, start_module
from cluster_checks import (
    all_keys, assert_clients_kept_working, assert_healthy, client_keys, clients_writing, cluster_client,
    cluster_nodes_fields, cluster_writes, command_counts, masters, owner_id, own_ranges, raw, reset_stats, seed,
    slot_owner, wait_for, write_into_foreign_slot, write_keys,
)
from redis.crc import key_slot
from redis_harness import form_cluster


def master_ranges(node) -> dict:
    """{node id: the slot ranges it serves} of the masters, as node sees them."""
    return {fields[0]: own_ranges(fields) for fields in cluster_nodes_fields(node) if "master" in fields[2]}


def slot_counts(node) -> dict:
    """{node id: slots served} of the masters, as node sees them."""
    return {node_id: sum(last - first + 1 for first, last in ranges) for node_id, ranges in master_ranges(node).items()}


def add_empty_master(cluster, extra) -> None:
    """extra meets the cluster; back once every node knows it and it knows every master's slots (a node just
    met learns each master's slots from that master's own messages, a moment apart)."""
    cluster[0].call("CLUSTER", "MEET", "127.0.0.1", extra.port, extra.bus_port)
    wait_for(lambda: all(extra.node_id() in [f[0] for f in cluster_nodes_fields(n)] for n in cluster)
             and master_ranges(extra) == master_ranges(cluster[0]), message="the new master known everywhere, and "
             "knowing every master's slots")


def joined_empty_master(nodes, fresh_nodes) -> tuple:
    """A fresh node met as an empty master: (it, every node)."""
    extra = fresh_nodes(1)[0]
    add_empty_master(nodes, extra)
    return extra, list(nodes) + [extra]


def ok(result: dict) -> dict:
    assert not result.get("failed"), result.get("msg")
    return result


def test_rebalance_onto_a_new_master_while_clients_write(cluster6, fresh_nodes):
    nodes = cluster6
    # Enough keys that the slots the rebalance moves hold some, even the emptiest ones (slot_choice fewest_keys).
    expected = write_keys(nodes, 60000)
    extra, everyone = joined_empty_master(nodes, fresh_nodes)
    reset_stats(everyone)
    planned = ok(run_module("redis_cluster_rebalance", seed(nodes), check=True))
    assert planned["changed"] and sum(move["slots"] for move in planned["moves"]) == 4096
    assert all(move["target"] == extra.address for move in planned["moves"])
    assert cluster_writes(everyone) == [] and slot_counts(nodes[0])[extra.node_id()] == 0
    # The new master serves no slot: clients meet it through MOVED first, and get client_grace to do so.
    assert any("meet it through MOVED first" in line and "10 s at most (client_grace)" in line for line in planned["plan"])
    # Unpatched clients: redis-py raises on an ASK to a node missing from its CLUSTER SLOTS view.
    with clients_writing(everyone) as writers:
        progress = tempfile.NamedTemporaryFile(delete=False)
        result = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), progress_file=progress.name,
                                                               expect_state_id=planned["state_id"])))
    planned_keys = sum(move["keys"] for move in planned["moves"])
    # The clients' own keys may add to the planned ones (written into a slot before it opened).
    assert result["changed"] and result["slots_moved"] == 4096 and result["keys_moved"] >= planned_keys > 0
    assert sorted(slot_counts(nodes[0]).values()) == [4096] * 4
    stored = all_keys(everyone)
    assert client_keys(stored) == expected
    assert_clients_kept_working(writers, stored)
    lines = [json.loads(line) for line in open(progress.name)]
    os.unlink(progress.name)
    assert lines and lines[-1]["slots_done"] == 4096 and lines[-1]["slots_total"] == 4096
    assert_healthy(nodes[0])
    again = ok(run_module("redis_cluster_rebalance", seed(nodes)))
    assert again["changed"] is False and again["plan"] == []
    stale = run_module("redis_cluster_rebalance", dict(seed(nodes), expect_state_id=planned["state_id"]))
    assert stale["failed"] and "changed since the plan was approved" in stale["msg"]


def test_two_new_masters_take_slots_from_all_while_clients_write(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 30000)
    extras = fresh_nodes(2)
    for extra in extras:
        add_empty_master(nodes, extra)
    everyone = list(nodes) + list(extras)
    with clients_writing(everyone) as writers:
        result = ok(run_module("redis_cluster_rebalance", seed(nodes)))
    targets = {move["target"] for move in result["moves"]}
    assert targets == {extra.address for extra in extras} and len(result["moves"]) >= 3
    assert sorted(slot_counts(nodes[0]).values()) == [3276, 3277, 3277, 3277, 3277]
    stored = all_keys(everyone)
    assert client_keys(stored) == expected
    assert_clients_kept_working(writers, stored)
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_rebalance", seed(nodes)))["changed"] is False


def test_weights_and_drain(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    drained = slot_owner(nodes, 0)
    heavy = slot_owner(nodes, 16383)
    before = slot_counts(nodes[1])
    result = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), weights={drained.address: 0, heavy.address: 2})))
    counts = slot_counts(nodes[1])
    assert counts.get(drained.node_id(), 0) == 0
    assert counts[heavy.node_id()] == 10923 and sum(counts.values()) == 16384
    # The fewest moves: every slot moved left a master above its target.
    assert result["slots_moved"] == sum(max(0, before[n] - counts.get(n, 0)) for n in before) == 5462
    assert all_keys(nodes) == expected
    assert_healthy(nodes[1])


def test_empty_master_left_out_then_filled_in_capped_runs(cluster6, fresh_nodes):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    extra, everyone = joined_empty_master(nodes, fresh_nodes)
    left_out = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), use_empty_masters=False)))
    assert left_out["changed"] is False and slot_counts(nodes[0]).get(extra.node_id(), 0) == 0
    runs = []
    while len(runs) < 6:
        result = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), max_slots=1500)))
        if not result["changed"]:
            break
        runs.append(result["slots_moved"])
    # 4096 slots reach the new master in capped runs, the last one short of the cap.
    assert runs == [1500, 1500, 1096] and slot_counts(nodes[0])[extra.node_id()] == 4096
    assert all_keys(everyone) == expected
    assert_healthy(nodes[0])


def test_weights_by_label(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 2000)
    first, second, third = masters(nodes)
    # Labels come with the nodes list: two masters in zone a, one in zone b that is to hold half the slots.
    listed = [dict(host="127.0.0.1", port=node.port, zone=zone) for node, zone in ((first, "a"), (second, "a"), (third, "b"))]
    task = dict(nodes=listed, weights={"zone=b": 2})
    planned = ok(run_module("redis_cluster_rebalance", task, check=True))
    assert planned["changed"] and slot_counts(nodes[0]) == {node.node_id(): count for node, count in
                                                            zip((first, second, third), (5461, 5462, 5461))}
    result = ok(run_module("redis_cluster_rebalance", task))
    assert slot_counts(nodes[0]) == {first.node_id(): 4096, second.node_id(): 4096, third.node_id(): 8192}
    assert result["slots_moved"] == sum(move["slots"] for move in planned["moves"]) == 2731
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_rebalance", task))["changed"] is False
    unknown = run_module("redis_cluster_rebalance", dict(task, weights={"zone=c": 2}))
    assert unknown["failed"] and "no master has label zone=c" in unknown["msg"]


def test_two_masters_drained_at_once_become_replicas(fresh_nodes):
    nodes = fresh_nodes(4)
    form_cluster(nodes.nodes, replicas=0)
    expected = write_keys(nodes, 20000)
    drained = nodes[0], nodes[1]
    result = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), weights={node.address: 0 for node in drained})))
    # Both moves run at once: each tells the other's source, which may already be a replica, of its new owners.
    assert result["slots_moved"] == 8192 and len(result["moves"]) == 2
    counts = slot_counts(nodes[2])
    assert sorted(counts.values()) == [0, 0, 8192, 8192] or sorted(counts.values()) == [8192, 8192]
    assert all(counts.get(node.node_id(), 0) == 0 for node in drained)
    wait_for(lambda: all(node.call("ROLE")[0] == b"slave" for node in drained), message="drained masters to replicate")
    assert all_keys(nodes) == expected
    assert_healthy(nodes[2])
    assert ok(run_module("redis_cluster_rebalance", dict(seed(nodes, 2), weights={node.address: 0 for node in drained})))["changed"] is False


def tag_in(slot: int) -> str:
    """A hash tag whose keys land in slot."""
    index = 0
    while key_slot(b"{h%d}" % index) != slot:
        index += 1
    return "h%d" % index


def test_slot_choice_contiguous_leaves_hot_slots_and_fewest_keys_scatters(cluster3, fresh_nodes):
    nodes = cluster3
    expected = write_keys(nodes, 12000)
    # A hot slot at the top of every master's range, where a run taken from the top end would start.
    hot = {}
    for fields in cluster_nodes_fields(nodes[0]):
        top = own_ranges(fields)[-1][1]
        expected.update(write_keys(nodes, 3000, prefix="{%s}" % tag_in(top)))
        hot[top] = fields[0]
    extra, everyone = joined_empty_master(nodes, fresh_nodes)
    scattered = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), slot_choice="fewest_keys"), check=True))
    planned = ok(run_module("redis_cluster_rebalance", seed(nodes), check=True))
    # 12000 keys leave more than 4096 slots empty: the emptiest slots hold none, one run of slots holds some.
    assert sum(move["keys"] for move in scattered["moves"]) == 0 < sum(move["keys"] for move in planned["moves"])
    result = ok(run_module("redis_cluster_rebalance", seed(nodes)))
    assert result["slots_moved"] == 4096 and sorted(slot_counts(nodes[0]).values()) == [4096] * 4
    assert all(owner_id(nodes[0], slot) == owner for slot, owner in hot.items())
    # Each source gave one run: it keeps at most two ranges, and the new master holds at most three.
    assert max(map(len, master_ranges(nodes[0]).values())) <= 3
    assert all_keys(everyone) == expected
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_rebalance", seed(nodes)))["changed"] is False
    # fewest_keys takes keyless slots wherever they lie, and the receiver's map scatters.
    source = slot_owner(nodes, min(hot))
    task = {"to": extra.address, "slots": 300, "slot_choice": "fewest_keys", "from": [source.address]}
    moved = ok(run_module("redis_cluster_reshard", dict(seed(nodes), **task)))
    assert moved["slots_moved"] == 300 and moved["keys_moved"] == 0
    assert len(master_ranges(nodes[0])[extra.node_id()]) > 50
    assert all_keys(everyone) == expected
    assert_healthy(nodes[0])


def test_open_slot_is_finished_under_an_approved_plan_and_bad_input_changes_nothing(cluster3, fresh_nodes):
    nodes = cluster3
    expected = write_keys(nodes, 6000)
    # A move stopped half-way, as an interrupted redis-cli reshard leaves it: one of the slot's keys moved.
    source, target = slot_owner(nodes, 100), slot_owner(nodes, 16000)
    keys = source.call("CLUSTER", "GETKEYSINSLOT", 100, 100)
    target.call("CLUSTER", "SETSLOT", 100, "IMPORTING", source.node_id())
    source.call("CLUSTER", "SETSLOT", 100, "MIGRATING", target.node_id())
    source.call("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", keys[0])
    extra, everyone = joined_empty_master(nodes, fresh_nodes)

    def still_open() -> bool:
        return "[100->-" in source.cluster_nodes() and "[100-<-" in target.cluster_nodes()

    # Check mode shows the whole run: the slot finished, then the moves planned from the owners that leaves.
    planned = ok(run_module("redis_cluster_rebalance", seed(nodes), check=True))
    assert planned["changed"] and any("slot 100" in line for line in planned["plan"])
    assert sum(move["slots"] for move in planned["moves"]) == 4096
    assert all(move["target"] == extra.address for move in planned["moves"])
    # Bad input, in check mode too, and a stale approval fail before the open slot is touched.
    for check in (True, False):
        bad = run_module("redis_cluster_rebalance", dict(seed(nodes), weights={"10.9.9.9:1": 2}), check=check)
        assert bad["failed"] and bad["msg"].startswith("weights:")
    stale = run_module("redis_cluster_rebalance", dict(seed(nodes), expect_state_id="0" * len(planned["state_id"])))
    assert stale["failed"] and "changed since the plan was approved" in stale["msg"]
    assert still_open()
    # The approval is of the state check mode saw; the run finishes the slot, then moves as planned after it.
    result = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), expect_state_id=planned["state_id"])))
    assert result["changed"] and result["finished_open_slots"] and result["slots_moved"] == 4096
    assert [(m["source"], m["target"], m["slots"]) for m in result["moves"]] \
        == [(m["source"], m["target"], m["slots"]) for m in planned["moves"]]
    assert not still_open() and sorted(slot_counts(nodes[0]).values()) == [4096] * 4
    assert all_keys(everyone) == expected
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_rebalance", seed(nodes)))["changed"] is False


def test_a_new_master_still_learning_slot_owners_is_waited_for(cluster3, fresh_nodes):
    nodes = cluster3
    expected = write_keys(nodes, 12000)
    extra, everyone = joined_empty_master(nodes, fresh_nodes)
    # The new master forgets one master, and for 60 s ignores what others say of it: it names nobody for that
    # master's slots, as a node just met does until that master's own messages reach it.
    unheard = nodes[1]
    extra.call("CLUSTER", "FORGET", unheard.node_id())
    planned = ok(run_module("redis_cluster_rebalance", seed(nodes), check=True))
    assert planned["plan"][0].startswith("wait until every node agrees") and extra.address in planned["plan"][0]
    (learning,) = [f for f in planned["findings"] if f["kind"] == "inconsistent_config"]
    assert learning["severity"] == "warning" and learning["nodes"] == [extra.node_id()]
    assert sum(move["slots"] for move in planned["moves"]) == 4096
    reset_stats(everyone)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(run_module, "redis_cluster_rebalance", dict(seed(nodes), expect_state_id=planned["state_id"]))
        # The run reads the new master's view again and again while it waits; then the two meet again.
        wait_for(lambda: command_counts(extra).get("cluster|nodes", 0) >= 3, message="the run waiting")
        assert cluster_writes(everyone) == []
        extra.call("CLUSTER", "MEET", "127.0.0.1", unheard.port, unheard.bus_port)
        result = ok(run.result())
    assert result["slots_moved"] == 4096 and sorted(slot_counts(nodes[0]).values()) == [4096] * 4
    assert all_keys(everyone) == expected
    assert_healthy(nodes[0])


def test_reshard_exactly_n_and_named_slots(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 1000)
    target = slot_owner(nodes, 0)
    before = slot_counts(nodes[0])
    result = ok(run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slots=1001)))
    after = slot_counts(nodes[0])
    assert after[target.node_id()] - before[target.node_id()] == 1001 and result["slots_moved"] == 1001
    # Long runs go under async/poll, as AWX jobs run them.
    named = ok(run_tasks([{"redisops.cluster.redis_cluster_reshard": dict(
        seed(nodes), to=target.address, slot_list=["16000-16009", "9000"]), "async": 120, "poll": 1}]).result)
    assert all(owner_id(nodes[0], slot) == target.node_id() for slot in list(range(16000, 16010)) + [9000])
    again = ok(run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slot_list=["16000-16009", "9000"])))
    assert named["changed"] and again["changed"] is False
    too_many = run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slots=16000))
    assert too_many["failed"] and "hold only" in too_many["msg"]
    # Nodes are named by address, never by bare id; the options by their names.
    assert target.address in too_many["msg"] and target.node_id() not in too_many["msg"]
    itself = run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slots=1, **{"from": [target.address]}))
    assert itself["failed"] and "%s (%s) is both the target (to) and a source (from)" % (
        target.address, target.node_id()[:8]) in itself["msg"]
    unknown = run_module("redis_cluster_reshard", dict(seed(nodes), to="10.9.9.9:1", slots=1))
    assert unknown["failed"] and unknown["msg"].startswith("to:")
    # Bad input fails before the first write, however late the option would first be used.
    before = slot_counts(nodes[0])
    nowhere = run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slots=10,
                                                       progress_file="/nonexistent-dir/progress.jsonl"))
    assert nowhere["failed"] and nowhere["msg"].startswith("progress_file:")
    garbled = run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slot_list=["7", "abc"]))
    assert garbled["failed"] and "'abc' is not a slot number" in garbled["msg"]
    assert slot_counts(nodes[0]) == before
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])


def start_reshard(nodes, to, slots, workdir: str, **args):
    """ansible-playbook moving slots slowly (one key per MIGRATE) in the background, in its own process group."""
    task = dict(seed(nodes), to=to, slot_list=[str(slot) for slot in slots], pipeline=1, parallel=1, **args)
    return start_module("redis_cluster_reshard", task, workdir)


def heavy_slots(nodes, tags) -> tuple:
    """1000 keys of 1 KB in the slot of each tag; ({key: value}, slots)."""
    written = {}
    for tag in tags:
        written.update(write_keys(nodes, 1000, prefix="{%s}" % tag, size=1024))
    return written, sorted({key_slot(("{%s}" % tag).encode()) for tag in tags})


@contextlib.contextmanager
def writes_held(node):
    """node holds back write commands (RESTOREs of MIGRATEs too) until the block ends; CLUSTER SETSLOT still runs."""
    node.call("CLIENT", "PAUSE", 120000, "WRITE")
    try:
        yield
    finally:
        node.call("CLIENT", "UNPAUSE")


def importing(node, slots) -> bool:
    """Whether node, as a target, has one of slots open (IMPORTING). Asked of the target: a source blocked in a
    MIGRATE to a target that holds back writes answers nothing until the target lets them through."""
    described = node.cluster_nodes()
    return any("[%d-<-" % slot in described for slot in slots)


def no_failure_flags(nodes) -> bool:
    return not any({"fail", "fail?"} & set(f[2].split(",")) for n in nodes for f in cluster_nodes_fields(n))


def test_killed_run_is_finished_by_fix_and_stopped_target_by_a_rerun(cluster6, fresh_nodes):
    nodes = cluster6
    extra, everyone = joined_empty_master(nodes, fresh_nodes)
    expected, first = heavy_slots(nodes, ["a%d" % i for i in range(10)])
    more, second = heavy_slots(nodes, ["b%d" % i for i in range(10)])
    expected.update(more)
    with tempfile.TemporaryDirectory() as workdir:
        # 1. The run's process is killed while keys are on their way: redis_cluster_fix finishes the move.
        # The target holds back its RESTOREs until the run is dead, so the kill always lands mid-move.
        with writes_held(extra):
            proc = start_reshard(nodes, extra.address, first, workdir)
            wait_for(lambda: importing(extra, first), timeout=120, message="a slot open on the target")
            time.sleep(0.5)  # the source's MIGRATE, sent within milliseconds, now waits on the target
            # The module runs in a process of its own (in its own session), not in ansible-playbook's group.
            subprocess.run(["pkill", "-KILL", "-f", "AnsiballZ_redis_cluster_reshard"], check=False)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        fixed = ok(run_module("redis_cluster_fix", seed(nodes)))
        assert fixed["changed"] and any("open" in f["kind"] for f in fixed["findings_before"])
        assert all_keys(everyone) == expected
        assert_healthy(nodes[0])
        # 2. The target stops answering past the MIGRATE timeout: the run fails, leaves the slots open,
        #    and a rerun of the same task finishes them.
        with writes_held(extra):
            proc = start_reshard(nodes, extra.address, second, workdir, timeout=1000, command_timeout=3)
            wait_for(lambda: importing(extra, second) or proc.poll() is not None, timeout=120,
                     message="a slot open on the target")
            time.sleep(0.5)
            extra.pause()
            try:
                output = proc.communicate(timeout=120)[0]
            finally:
                extra.resume()
        assert proc.returncode != 0 and "failed" in output, output
    wait_for(lambda: no_failure_flags(everyone), timeout=60, message="the stopped node's fail flags to clear")
    # MIGRATE blocks its source while the target is silent, so the source may have been failed over
    # meanwhile, leaving keys split between its promoted replica and the target: fix first, then rerun.
    repaired = ok(run_module("redis_cluster_fix", seed(nodes)))
    assert all_keys(everyone) == expected, repaired["plan"]
    # Rerunning both interrupted tasks finishes them (fix closed the first one's untouched slots where they were).
    result = ok(run_module("redis_cluster_reshard",
                           dict(seed(nodes), to=extra.address, slot_list=[str(slot) for slot in first + second])))
    assert result["changed"] or repaired["changed"]
    owners = {slot: owner_id(nodes[0], slot) for slot in first + second}
    assert set(owners.values()) == {extra.node_id()}
    assert all_keys(everyone) == expected
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_fix", seed(nodes)))["changed"] is False


def test_progress_lines_while_a_hot_slot_empties(cluster3):
    nodes = cluster3
    expected = write_keys(nodes, 5000, prefix="{busy}")
    slot = key_slot(b"{busy}")
    source = slot_owner(nodes, slot)
    target = next(node for node in masters(nodes) if node is not source)
    with tempfile.TemporaryDirectory() as workdir:
        progress = os.path.join(workdir, "progress.jsonl")
        # The target holds back its RESTOREs, so the first MIGRATE waits longer than a progress interval
        # with the slot's other keys still to move, however fast the machine.
        with writes_held(target):
            proc = start_reshard(nodes, target.address, [slot], workdir, progress_file=progress)
            wait_for(lambda: importing(target, [slot]), message="the slot open on the target")
            time.sleep(1.5)
        output = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, output
        lines = [json.loads(line) for line in open(progress)]
    during = [line for line in lines[:-1] if line["slots_done"] == 0]
    assert during and all(0 < line["keys_moved"] < 5000 for line in during), lines
    assert [line["keys_moved"] for line in lines] == sorted(line["keys_moved"] for line in lines)
    assert (lines[-1]["slots_done"], lines[-1]["slots_total"], lines[-1]["keys_moved"]) == (1, 1, 5000)
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])


def test_cluster_down_on_the_target_mid_move_is_waited_out(cluster3):
    nodes = cluster3
    expected = write_keys(nodes, 60000)
    source = slot_owner(nodes, 0)
    target, bystander = [node for node in masters(nodes) if node is not source]
    mine = {fields[0]: own_ranges(fields) for fields in cluster_nodes_fields(source)}
    # Enough slots that the batches after the first take a good part of a second, even one key per MIGRATE.
    slots = [slot for first, last in mine[source.node_id()] for slot in range(first, last + 1)][:4000]
    foreign = mine[bystander.node_id()][0][0]
    with tempfile.TemporaryDirectory() as workdir:
        progress = os.path.join(workdir, "progress.jsonl")
        proc = start_reshard(nodes, target.address, slots, workdir, progress_file=progress)
        wait_for(lambda: os.path.exists(progress) and os.path.getsize(progress) > 0, timeout=60,
                 message="the first batch handed over", interval=0.01)
        # Past its first batch, the target forgets who serves one of the bystander's slots: it refuses keys
        # (CLUSTERDOWN) until the bystander's next ping tells it again.
        target.call("CLUSTER", "DELSLOTS", foreign)
        output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    # The premise: MIGRATEs were refused mid-move.
    assert target.client().info("errorstats").get("errorstat_CLUSTERDOWN", {}).get("count", 0) > 0
    assert {owner_id(nodes[0], slot) for slot in slots} == {target.node_id()}
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])


def test_key_on_both_sides_is_compared_and_replaced_only_when_asked(cluster6):
    nodes = cluster6
    expected = write_keys(nodes, 300, prefix="{both}")
    slot = key_slot(b"{both}")
    source = slot_owner(nodes, slot)
    target = next(node for node in masters(nodes) if node is not source)
    # Copies on the target, in a slot it does not serve yet: one equal to the source's, one different.
    write_into_foreign_slot(target, "{both}:7", expected[b"{both}:7"].decode())
    write_into_foreign_slot(target, "{both}:8", "the target's own value")
    task = dict(seed(nodes), to=target.address, slot_list=[str(slot)])
    refused = run_module("redis_cluster_reshard", task)
    assert refused["failed"] and "{both}:8" in refused["msg"] and "replace: true" in refused["msg"], refused["msg"]
    assert "{both}:7" not in refused["msg"]
    # Nothing was overwritten: the source still holds its copy of the conflicting key, the target its own.
    assert raw(source, ("ASKING",), ("GET", "{both}:8"))[1] == expected[b"{both}:8"]
    assert raw(target, ("ASKING",), ("GET", "{both}:8"))[1] == b"the target's own value"
    replaced = ok(run_module("redis_cluster_reshard", dict(task, replace=True)))
    assert replaced["changed"] and owner_id(nodes[0], slot) == target.node_id()
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_reshard", task))["changed"] is False


def test_equal_sets_and_hashes_built_in_another_order_are_not_conflicts(cluster6):
    nodes = cluster6
    slot = key_slot(b"{pair}")
    source = slot_owner(nodes, slot)
    target = next(node for node in masters(nodes) if node is not source)
    members = [b"member-%d" % index for index in range(300)]
    fields = [word for index in range(300) for word in (b"field-%d" % index, b"value-%d" % index)]
    raw(source, ("SADD", "{pair}:set", *members), ("HSET", "{pair}:hash", *fields), ("SADD", "{pair}:diff", *members))
    # The target's copies, as an interrupted move leaves them, but built in reverse order; one set has an extra member.
    pairs = [fields[index:index + 2] for index in range(0, len(fields), 2)]
    target_copies = raw(
        target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()),
        ("ASKING",), ("SADD", "{pair}:set", *reversed(members)),
        ("ASKING",), ("HSET", "{pair}:hash", *[word for pair in reversed(pairs) for word in pair]),
        ("ASKING",), ("SADD", "{pair}:diff", b"extra", *reversed(members)),
        ("ASKING",), ("DUMP", "{pair}:set"), ("ASKING",), ("DUMP", "{pair}:hash"),
        ("CLUSTER", "SETSLOT", slot, "STABLE"))
    # The premise: equal contents, different payloads.
    ours = raw(source, ("DUMP", "{pair}:set"), ("DUMP", "{pair}:hash"))
    assert ours[0] != target_copies[-4] and ours[1] != target_copies[-2]
    task = dict(seed(nodes), to=target.address, slot_list=[str(slot)])
    refused = run_module("redis_cluster_reshard", task)
    assert refused["failed"] and "1 key(s)" in refused["msg"] and "{pair}:diff" in refused["msg"], refused["msg"]
    replaced = ok(run_module("redis_cluster_reshard", dict(task, replace=True)))
    assert replaced["changed"] and owner_id(nodes[0], slot) == target.node_id()
    with target.client() as conn:
        assert conn.smembers("{pair}:set") == conn.smembers("{pair}:diff") == set(members)
        assert conn.hgetall("{pair}:hash") == dict(pairs)
    with source.client() as conn:
        assert conn.dbsize() == 0 or not conn.exists("{pair}:set")
    assert_healthy(nodes[0])


def test_acl_user_moves_keys_and_the_password_never_shows(fresh_nodes):
    secret = "move-secret-value"
    nodes = fresh_nodes(3, password=secret)
    form_cluster(nodes.nodes, replicas=0)
    expected = write_keys(nodes, 3000)
    target = slot_owner(nodes, 0)
    # Slots that hold keys, so MIGRATE has to authenticate (AUTH2 default <password>) on the target.
    mine = next(own_ranges(f) for f in cluster_nodes_fields(nodes[0]) if f[0] == target.node_id())
    slots = sorted(s for s in {key_slot(key) for key in expected} if not any(a <= s <= b for a, b in mine))[:50]
    run = run_tasks([{"redisops.cluster.redis_cluster_reshard": dict(seed(nodes), to=target.address, login_user="default",
                                                                     slot_list=[str(slot) for slot in slots])}],
                    env={"REDIS_CLUSTER_PASSWORD": secret}, verbosity=3)
    assert ok(run.result)["slots_moved"] == 50 and run.result["keys_moved"] >= 50
    assert secret not in run.output and secret not in str(run.results)
    assert all_keys(nodes) == expected


def test_unsound_cluster_is_refused(cluster6):
    nodes = cluster6
    for node in nodes:
        raw(node, ("CLUSTER", "DELSLOTSRANGE", 0, 9))
    result = run_module("redis_cluster_rebalance", dict(seed(nodes), weights={slot_owner(nodes, 100).address: 0}))
    assert result["failed"] and "redis_cluster_fix" in result["msg"] and "served by no reachable master" in result["msg"]


def test_three_masters_created_without_replicas_rebalance_is_a_no_op(cluster3):
    nodes = cluster3
    result = ok(run_module("redis_cluster_rebalance", seed(nodes)))
    assert result["changed"] is False


def typed_dataset(client) -> None:
    """Every data type, TTLs, binary and odd key names, and one slot fuller than a listing page (8 x pipeline)."""
    pipe = client.pipeline()
    for index in range(200):
        pipe.hset(b"hash:%d" % index, mapping={b"f%d" % field: b"v" * field for field in range(20)})
        pipe.rpush(b"list:%d" % index, *[b"item%d" % item for item in range(30)])
        pipe.sadd(b"set:%d" % index, *[b"m%d" % member for member in range(25)])
        pipe.zadd(b"zset:%d" % index, {b"z%d" % member: member / 3 for member in range(25)})
        pipe.xadd(b"stream:%d" % index, {b"field": b"%d" % index})
        pipe.set(b"ttl:%d" % index, b"expires", px=3_600_000 + index)
        pipe.set(b"bin:\x00\xff\r\n %d" % index, bytes(range(256)))
        pipe.pfadd(b"hll:%d" % index, *[b"e%d" % element for element in range(50)])
    pipe.execute()
    # redis-py's cluster pipeline sends each slot's commands together; a thousand at a time keeps it small.
    for start in range(0, 9000, 1000):
        pipe = client.pipeline()
        for index in range(start, start + 1000):
            pipe.set(b"{hot}:%d" % index, b"x" * 64)
        pipe.execute()


def typed_value(conn, key) -> tuple:
    """(value, whether it has a TTL) of any key. The value is the DUMP payload, except for sets: a hash-table set
    is serialized in table order, which a RESTORE may change."""
    value = frozenset(conn.smembers(key)) if conn.type(key) == b"set" else conn.dump(key)
    return value, conn.pttl(key) > 0


def test_every_type_ttl_and_binary_name_survives_moves(cluster6, fresh_nodes):
    nodes = cluster6
    client = cluster_client(nodes)
    try:
        typed_dataset(client)
    finally:
        client.close()
    before = all_keys(nodes, typed_value)
    assert len(before) == 200 * 8 + 9000 and sum(has_ttl for _dump, has_ttl in before.values()) == 200
    hot = key_slot(b"{hot}")
    target = next(node for node in masters(nodes) if node.node_id() != owner_id(nodes[0], hot))
    moved = ok(run_module("redis_cluster_reshard", dict(seed(nodes), to=target.address, slot_list=[str(hot)])))
    assert moved["keys_moved"] == 9000 and owner_id(nodes[0], hot) == target.node_id()
    extra, everyone = joined_empty_master(nodes, fresh_nodes)
    # Draining the hot slot's new owner moves its keys again, onto the others and the new master.
    result = ok(run_module("redis_cluster_rebalance", dict(seed(nodes), weights={target.address: 0})))
    assert result["keys_moved"] > 9000 and owner_id(nodes[0], hot) != target.node_id()
    after = all_keys(everyone, typed_value)
    assert after.keys() == before.keys()
    assert [key for key in before if after[key] != before[key]] == []
    assert_healthy(nodes[0])
