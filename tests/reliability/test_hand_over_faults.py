# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A node killed in the middle of a quiet hand-over: a master that serves no slot gets its first slots without
opening them (the source's writes paused, the keys copied, the target's claim), and kill -9 hits the source or the
target while the target imports the copies and the source's writes wait. Then redis_cluster_fix and the reshard
again, through ansible-playbook: the cluster ends healthy, every key stored before is there with its value, and the
client writing during the move lost no acknowledged write. The seeded trials of test_faults.py strike between
progress lines, which a quiet hand-over of milliseconds never spans."""

from __future__ import annotations

import tempfile
import threading
import time

import pytest
from cluster_checks import (
    Writer, all_keys, assert_healthy, cluster_nodes_fields, command_counts, open_markers, own_ranges, slot_runs, tags_in,
    wait_for, write_keys,
)
from faults import DURABLE, failed_message, finish, no_failure_flags, tracebacks
from playbook_runs import run_tasks, start_module
from redis_harness import RedisNodes, form_cluster, wait_converged

from ansible_collections.redisops.cluster.plugins.module_utils._client import ConnectionOptions, NodeConnection

MOVED_SLOTS = 200  # of the source's, resharded onto the newcomer
# Keys per moved slot: the first hand-over copies FIRST_SLOTS (64) slots of them, 2,560 keys, while the source's
# writes wait; a window of milliseconds that a watcher polling the target can meet.
KEYS_PER_SLOT = 40
DOWN_S = 0.5  # below the node timeout (2 s): the victim comes back before any failover


class Watcher(threading.Thread):
    """Polls the target until it imports a slot, then reads the source's pause count and kills the victim at once;
    what it saw in `seen`."""

    def __init__(self, source, target, victim, timeout: float = 120.0):
        super().__init__(daemon=True)
        self.source, self.target, self.victim = source, target, victim
        self.deadline = time.monotonic() + timeout
        self.seen: dict = {}
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline and not self.done.is_set():
                markers = [marker for marker in open_markers(self.target) if "-<-" in marker]
                if markers:
                    # CLIENT PAUSE and UNPAUSE calls the source received since CONFIG RESETSTAT.
                    calls = command_counts(self.source)
                    self.victim.kill()
                    self.seen = {"importing": len(markers), "pauses": calls.get("client|pause", 0),
                                 "unpauses": calls.get("client|unpause", 0)}
                    return
        finally:
            self.done.set()


@pytest.mark.parametrize("victim_role", ["source", "target"])
def test_kill_during_a_quiet_hand_over(victim_role):
    with RedisNodes(7, extra_args=DURABLE) as nodes:
        form_cluster(nodes.nodes[:6], replicas=1)
        write_keys(nodes, 2000, prefix="base")
        source = next(node for node in nodes.nodes[:6] if node.call("ROLE")[0] == b"master")
        probe = NodeConnection(source.host, source.port, ConnectionOptions())
        try:
            if not probe.drops_lost_keys_while_paused():
                pytest.skip("this server hands over only slots that hold no key without opening them")
        finally:
            probe.close()
        (first, last), = (own for fields in cluster_nodes_fields(source) if "myself" in fields[2]
                          for own in own_ranges(fields))
        tags = tags_in(first, last, MOVED_SLOTS)
        for tag in tags.values():
            source.call("MSET", *[part for index in range(KEYS_PER_SLOT)
                                  for part in (b"{%s}:%d" % (tag, index), b"%s:%d" % (tag, index))])
        newcomer = nodes.nodes[6]
        seed = {"login_host": source.host, "login_port": source.port}
        joins = dict(seed, node=newcomer.address, role="master")
        joined = run_tasks([{"redisops.cluster.redis_cluster_node": joins}])
        assert not joined.results[0].get("failed"), joined.results[0].get("msg")
        wait_converged(nodes.nodes)
        before = all_keys(nodes)
        source.call("CONFIG", "RESETSTAT")
        args = dict(seed, to=newcomer.address, slot_list=slot_runs(tags), pipeline=10)
        victim = source if victim_role == "source" else newcomer
        writer = Writer(nodes, prefix="online", interval=0.01)
        with tempfile.TemporaryDirectory() as workdir:
            proc = start_module("redis_cluster_reshard", args, workdir)
            writer.start()
            watcher = Watcher(source, newcomer, victim)
            watcher.start()
            try:
                watcher.done.wait(130)
                assert watcher.seen, "the target imported no slot: %s" % finish(proc)[1]
                time.sleep(DOWN_S)
                victim.restart()
                rc, output = finish(proc)
                assert tracebacks(output) == [] and "MODULE FAILURE" not in output, output
                first_message = failed_message(output)
                assert rc == 0 or first_message, "the interrupted run failed without a message:\n" + output
                wait_for(lambda: no_failure_flags(nodes.nodes), timeout=60,
                         message="every node reachable, no fail flags")
                run = run_tasks([{"redisops.cluster.redis_cluster_fix": seed},
                                 {"redisops.cluster.redis_cluster_reshard": args},
                                 {"redisops.cluster.redis_cluster_reshard": args}])
            finally:
                watcher.done.set()
                writer.stop()
        # The kill met the first hand-over: the target imported the copies while the source's writes waited.
        assert watcher.seen["pauses"] > watcher.seen["unpauses"], watcher.seen
        fixed, rerun, again = run.results
        assert tracebacks(run.output) == [], run.output
        for result in run.results:
            assert not result.get("failed"), result.get("msg")
        assert again["changed"] is False, again.get("plan")
        wait_converged(nodes.nodes)
        assert_healthy(source)
        owners = {fields[1].split("@")[0]: {slot for first_slot, last_slot in own_ranges(fields)
                                            for slot in range(first_slot, last_slot + 1)}
                  for fields in cluster_nodes_fields(source)}
        assert set(tags) <= owners[newcomer.address]
        stored = all_keys(nodes)
        missing = sorted(key for key, value in before.items() if stored.get(key) != value)
        assert missing == [], "%d key(s) missing or changed, e.g. %s; first run: %s; fix: %s; rerun: %s" % (
            len(missing), missing[:5], first_message or "ok", fixed.get("plan"), rerun.get("plan"))
        lost = sorted(key for key, value in writer.acknowledged.items() if stored.get(key) != value)
        assert writer.acknowledged and lost == [], "%d acknowledged write(s) lost, e.g. %s" % (len(lost), lost[:5])
