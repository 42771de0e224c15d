#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Forming a 6-node cluster (3 masters + 3 replicas): redis_cluster_create against `redis-cli --cluster create`.

Both tools run on fresh nodes, alternately, several rounds, in one run. Measured per run:
- returned: wall time until the tool returns (ansible-playbook for us: Ansible's start-up included);
- converged: wall time until every node reports cluster_state:ok and all agree on roles and slots
  (our module returns only then; redis-cli returns earlier, so the harness waits for it).
The module's own elapsed_ms (no Ansible start-up) is reported too. Also times the pure placement and
create plan for 1000 nodes over 3 zones.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from playbook_runs import ANSIBLE_PLAYBOOK, COLLECTIONS_PATH, ansible_env  # noqa: E402
from redis_harness import REDIS_CLI, RedisNodes, wait_converged  # noqa: E402
from bench_docs import write_section  # noqa: E402

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.redisops.cluster.plugins.module_utils._planner import plan_create  # noqa: E402
from ansible_collections.redisops.cluster.plugins.module_utils._topology import (  # noqa: E402
    ClusterState, NodeAddress, observation_from_replies,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def redis_cli_create(nodes) -> tuple:
    started = time.monotonic()
    subprocess.run([REDIS_CLI, "--cluster", "create"] + nodes.addresses + ["--cluster-replicas", "1", "--cluster-yes"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    returned = time.monotonic() - started
    wait_converged(nodes.nodes, timeout=60)
    return returned, time.monotonic() - started, None


def module_create(nodes) -> tuple:
    """A one-task playbook, as a user would run it; elapsed_ms read from the -v output."""
    with tempfile.TemporaryDirectory() as workdir:
        playbook = os.path.join(workdir, "create.yml")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
                {"redisops.cluster.redis_cluster_create": {"nodes": nodes.addresses}}]}], handle)
        started = time.monotonic()
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-v", "-i", "localhost,", "-c", "local", playbook], env=ansible_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        returned = time.monotonic() - started
    elapsed = re.search(r'"elapsed_ms": (\d+)', proc.stdout)
    if proc.returncode != 0 or elapsed is None:
        raise RuntimeError("create failed:\n%s" % proc.stdout)
    wait_converged(nodes.nodes, timeout=60)
    return returned, time.monotonic() - started, int(elapsed.group(1)) / 1000.0


def fresh_node_text(index: int) -> str:
    return "%040x :%d@%d myself,master - 0 0 0 connected\n" % (index + 1, 7000 + index, 17000 + index)


def plan_1000_nodes() -> float:
    observations = []
    for index in range(1000):
        labels = (("hostname", "host-%d" % (index // 4)), ("rack", "rack-%d" % (index // 100)),
                  ("zone", "zone-%s" % "abc"[index % 3]))
        observations.append(observation_from_replies(
            NodeAddress("10.0.%d.%d" % (index // 250, index % 250), 7000 + index, labels),
            fresh_node_text(index), "cluster_state:fail\r\ncluster_known_nodes:1\r\n", ""))
    state = ClusterState(tuple(observations))
    best = None
    for _round in range(3):
        started = time.perf_counter()
        plan = plan_create(ClusterState(state.observations), replicas=1)
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    assert len([s for s in plan.steps if s.action == "replicate"]) == 500
    return best


def median(values) -> float:
    return statistics.median(values)


def main() -> int:
    runs = {"redis-cli --cluster create": [], "redis_cluster_create": []}
    for round_index in range(ROUNDS):
        for name, create in (("redis-cli --cluster create", redis_cli_create), ("redis_cluster_create", module_create)):
            with RedisNodes(6) as nodes:
                runs[name].append(create(nodes))
        print("round %d/%d done" % (round_index + 1, ROUNDS), file=sys.stderr)
    cli = runs["redis-cli --cluster create"]
    ours = runs["redis_cluster_create"]
    lines = [
        "## redis_cluster_create",
        "",
        "6 fresh nodes on loopback -> 3 masters + 3 replicas; median of %d runs per tool, alternating, one run." % ROUNDS,
        "",
        "| tool | returned (s) | all nodes converged (s) | module time (s) |",
        "| --- | ---: | ---: | ---: |",
        "| redis-cli --cluster create | %.2f | %.2f | - |" % (median([r[0] for r in cli]), median([r[1] for r in cli])),
        "| redis_cluster_create, one-task ansible-playbook | %.2f | %.2f | %.2f |"
        % (median([r[0] for r in ours]), median([r[1] for r in ours]), median([r[2] for r in ours])),
        "",
        "Ratios ours / redis-cli (medians): ansible-playbook wall time to a converged cluster / redis-cli's "
        "**%.2f**; the module's own time / redis-cli's time to a converged cluster **%.2f**; / redis-cli's "
        "return **%.2f**. The module returns only once every node agrees and reports cluster_state:ok; "
        "ansible-playbook adds its own start-up (Python, plugin loading, module packaging) to the wall time."
        % (median([r[1] for r in ours]) / median([r[1] for r in cli]), median([r[2] for r in ours]) / median([r[1] for r in cli]),
           median([r[2] for r in ours]) / median([r[0] for r in cli])),
        "",
        "Placement + create plan for 1000 fresh nodes over 3 zones (10 racks, 250 hosts), best of 3: **%.3f s**."
        % plan_1000_nodes(),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("## redis_cluster_create", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
