#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make demo: 6 local nodes formed into a cluster by redis_cluster_create and observed by redis_cluster_facts (as a
table); then a 7th node joins as an empty master and redis_cluster_rebalance plans in check mode and applies that plan.

Set DEMO_KEEP=1 to leave the nodes running (their ports are printed) until Enter is pressed.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))

import redis  # noqa: E402
from playbook_runs import run_module  # noqa: E402
from redis_harness import RedisNodes  # noqa: E402

KEYS = 1000


def ranges_text(ranges) -> str:
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in ranges) or "-"


def table(facts: dict) -> str:
    ids = {node["id"]: node for node in facts["nodes"]}
    header = ("node", "id", "role", "replica of", "slots", "count", "keys", "memory", "version", "flags")
    rows = [header]
    for node in facts["nodes"]:
        master = ids.get(node["master_id"])
        rows.append((
            "%s:%d" % (node["host"], node["port"]), node["id"][:8], node["role"],
            "%s:%d" % (master["host"], master["port"]) if master else "-",
            ranges_text(node["slots"]), str(node["slot_count"]), str(node["keys"]),
            "%.1f MiB" % (node["used_memory"] / 1048576.0) if node["used_memory"] else "-",
            node["redis_version"] or "-", ",".join(node["flags"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def show_facts(port: int) -> dict | None:
    """The cluster's facts from redis_cluster_facts, printed as a table; None when the module failed."""
    result = run_module("redis_cluster_facts", {"login_host": "127.0.0.1", "login_port": port})
    if result.get("failed"):
        print(result["msg"])
        return None
    facts = result["ansible_facts"]["redis_cluster"]
    print(table(facts))
    print("\nstate: %s   slots covered: %d   masters: %d   replicas: %d   imbalance: %.2f%%   module time: %d ms"
          % (facts["state"], facts["slots_covered"], facts["masters"], facts["replicas"],
             facts["imbalance_pct"], result["elapsed_ms"]))
    for finding in facts["findings"]:
        print("  [%s] %s: %s" % (finding["severity"], finding["kind"], finding["message"]))
    return facts


def join_empty_master(seed, extra) -> None:
    """extra meets the cluster, as `redis-cli --cluster add-node` has it do; back once the seed lists it."""
    extra.call("CLUSTER", "MEET", seed.host, seed.port, seed.bus_port)
    deadline = time.monotonic() + 30
    while extra.node_id() not in seed.cluster_nodes():
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not learn of %s" % (seed.address, extra.address))
        time.sleep(0.05)


def rebalance(port: int) -> bool:
    """redis_cluster_rebalance in check mode, then applied under the state_id check mode returned."""
    seed = {"login_host": "127.0.0.1", "login_port": port}
    planned = run_module("redis_cluster_rebalance", seed, check=True)
    if planned.get("failed"):
        print(planned["msg"])
        return False
    print("redisops.cluster.redis_cluster_rebalance in check mode plans (state_id %s):" % planned["state_id"])
    for move in planned["moves"]:
        print("  %s -> %s: %d slots, %d keys" % (move["source"], move["target"], move["slots"], move["keys"]))
    result = run_module("redis_cluster_rebalance", dict(seed, expect_state_id=planned["state_id"]))
    if result.get("failed"):
        print(result["msg"])
        return False
    print("Applied with expect_state_id: %d slots and %d keys moved in %d ms.\n"
          % (result["slots_moved"], result["keys_moved"], result["apply_ms"]))
    return True


def main() -> int:
    with RedisNodes(7) as nodes:
        members, extra = nodes.nodes[:6], nodes[6]
        print("Started 7 redis-server nodes on ports %s" % ", ".join(str(node.port) for node in nodes))
        created = run_module("redis_cluster_create", {"nodes": [node.address for node in members], "replicas": 1})
        if created.get("failed"):
            print(created["msg"])
            return 1
        print("redisops.cluster.redis_cluster_create formed a cluster of 6 in %d ms:" % created["elapsed_ms"])
        for step in created["plan"]:
            print("  " + step)
        client = redis.RedisCluster(host="127.0.0.1", port=members[0].port)
        pipe = client.pipeline()
        for index in range(KEYS):
            pipe.set("demo:%d" % index, "value %d" % index)
        pipe.execute()
        client.close()
        print("\nWrote %d keys; observing the cluster with redisops.cluster.redis_cluster_facts ...\n" % KEYS)
        if show_facts(members[0].port) is None:
            return 1
        print("\n%s joins as an empty master (CLUSTER MEET).\n" % extra.address)
        join_empty_master(members[0], extra)
        if not rebalance(members[0].port):
            return 1
        facts = show_facts(members[0].port)
        if facts is None:
            return 1
        kept = sum(node["keys"] for node in facts["nodes"] if node["role"] == "master")
        print("\nkeys on the masters: %d of %d written" % (kept, KEYS))
        if os.environ.get("DEMO_KEEP"):
            input("\nNodes are running; press Enter to stop them.")
        if kept != KEYS:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
