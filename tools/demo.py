#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make demo: 6 local nodes formed into a cluster by redis_cluster_create, observed by redis_cluster_facts, as a table.

Set DEMO_KEEP=1 to leave the nodes running (their ports are printed) until Enter is pressed.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))

import redis  # noqa: E402
from ansible_runner import run_module  # noqa: E402
from redis_harness import RedisNodes  # noqa: E402


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


def main() -> int:
    with RedisNodes(6) as nodes:
        print("Started 6 redis-server nodes on ports %s" % ", ".join(str(node.port) for node in nodes))
        created = run_module("redis_cluster_create", {"nodes": nodes.addresses, "replicas": 1})
        if created.get("failed"):
            print(created["msg"])
            return 1
        print("redisops.cluster.redis_cluster_create formed the cluster in %d ms:" % created["elapsed_ms"])
        for step in created["plan"]:
            print("  " + step)
        client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        pipe = client.pipeline()
        for index in range(1000):
            pipe.set("demo:%d" % index, "value %d" % index)
        pipe.execute()
        client.close()
        print("\nWrote 1000 keys; observing the cluster with redisops.cluster.redis_cluster_facts ...\n")
        result = run_module("redis_cluster_facts", {"login_host": "127.0.0.1", "login_port": nodes[0].port})
        if result.get("failed"):
            print(result["msg"])
            return 1
        facts = result["ansible_facts"]["redis_cluster"]
        print(table(facts))
        print("\nstate: %s   slots covered: %d   masters: %d   replicas: %d   imbalance: %.2f%%   module time: %d ms"
              % (facts["state"], facts["slots_covered"], facts["masters"], facts["replicas"],
                 facts["imbalance_pct"], result["elapsed_ms"]))
        for finding in facts["findings"]:
            print("  [%s] %s: %s" % (finding["severity"], finding["kind"], finding["message"]))
        if os.environ.get("DEMO_KEEP"):
            input("\nNodes are running; press Enter to stop them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
