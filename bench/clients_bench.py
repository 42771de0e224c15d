# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: cluster clients during a rebalance onto a new empty master - our module against redis-cli.

Every tool gets a freshly built cluster with the same data as case A of bench/migrate_bench.py: 3 masters (no
replicas), 200 000 keys of 100 bytes, then an empty master joins. Two unpatched cluster clients write and read back
keys of their own the whole time: redis-py's RedisCluster (in this process) and ioredis (tests/clients, in node).
They start a second before the tool and stop a second after it. The tools: redis_cluster_rebalance with default
options, the same with client_grace: 0, and `redis-cli --cluster rebalance --cluster-use-empty-masters`.

Counted per client: writes tried, errors (anything the client raised), and acknowledged writes missing afterwards.
After every run the keys written beforehand are counted and `redis-cli --cluster check` must pass. The markdown goes
to stdout and into docs/benchmarks.md under "## clients during a rebalance"; progress goes to stderr.

Environment: BENCH_KEYS_A (fewer keys while trying it), BENCH_NO_DOCS=1 (print only).
"""

from __future__ import annotations

import datetime
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import migrate_bench as bench  # noqa: E402  (puts the collection and tests/lib on the path)
from bench_docs import DOCS, run_main, versions, write_section  # noqa: E402
from cluster_checks import clients_writing  # noqa: E402
from redis_harness import REDIS_SERVER  # noqa: E402

SECTION = "## clients during a rebalance"
SETTLE = 1.0  # seconds the clients write before the tool starts and after it ends


def client_records(nodes, writers) -> tuple:
    """(keys the clients left in the cluster, client -> acknowledged writes not found with their value)."""
    stored = {}
    for port in bench.census(nodes):
        conn = next(node for node in nodes if node.port == port).client()
        for pattern in (b"online:*", b"ioredis:*"):
            keys = list(conn.scan_iter(match=pattern, count=1000))
            pipe = conn.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            stored.update(zip(keys, pipe.execute()))
    return len(stored), {writer.name_shown: sum(1 for key, value in writer.acknowledged.items()
                                                if stored.get(key) != value) for writer in writers}


def run(name: str, dataset, action) -> dict:
    bench.log("clients: %s" % name)
    with bench.build(3, dataset, empty_master=True) as nodes:
        with clients_writing(nodes.nodes) as writers:
            time.sleep(SETTLE)
            measured = action(nodes)
            time.sleep(SETTLE)
        client_keys, missing = client_records(nodes.nodes, writers)
        # The keys written beforehand are all there when the total is theirs plus the clients' own.
        result = bench.verify(nodes, len(dataset) + client_keys)
        result["found"] -= client_keys
        result["expected"] -= client_keys
        result.update(measured, tool=name, missing=missing,
                      clients=[(writer.name_shown, len(writer.acknowledged), writer.errors) for writer in writers])
    for client, acknowledged, errors in result["clients"]:
        first = (": " + errors[0]) if errors else ""
        bench.log("  %s: %d acknowledged, %d error(s)%s" % (client, acknowledged, len(errors), first))
    return result


def cell(run_result: dict, client: str) -> str:
    for name, acknowledged, errors in run_result["clients"]:
        if name == client:
            missing = run_result["missing"].get(name, 0)
            text = "%d of %d" % (len(errors), acknowledged + len(errors))
            return text + ("; **%d acknowledged missing**" % missing if missing else "")
    return "-"


def report(runs, dataset, load: tuple, total: float) -> str:
    clients = [name for name, _acknowledged, _errors in runs[0]["clients"]]
    lines = [SECTION, "",
             "Measured by `make bench` (`bench/clients_bench.py`) on %s: %d cores, %s. Each tool gets a freshly built "
             "cluster: 3 masters (no replicas) holding %d keys of %d bytes, then an empty 4th master joins. %s "
             "write and read back keys of their own (`SET` then `GET`, one at a time) from %.0f s before the tool "
             "starts until %.0f s after it ends; an error is anything the client raised. Load average (1 min) at the "
             "start and the end: %.1f and %.1f. Whole run: %.0f s."
             % (datetime.date.today().isoformat(), os.cpu_count(), versions(REDIS_SERVER), len(dataset), dataset.size,
                " and ".join("unpatched %s" % name for name in clients).capitalize(), SETTLE, SETTLE, load[0], load[1], total), "",
             "| tool | time (s) | " + " | ".join("%s: errors of writes" % name for name in clients)
             + " | keys present after |",
             "| --- | ---: | " + " | ".join("---:" for _name in clients) + " | --- |"]
    for result in runs:
        cells = " | ".join(cell(result, name) for name in clients)
        lines.append("| %s | %.2f | %s | %s |" % (result["tool"], result["seconds"], cells, bench.present(result)))
    ours, cli = runs[0], runs[-1]
    lines += ["", "Time is the module's `apply_ms` (the moves, the grace and the convergence waits) and redis-cli's "
              "wall time. With default options the module took %.2f s, redis-cli %.2f s: %.1fx less time, the grace "
              "included (`client_grace`, at most %.0f s, ends once every client at work has met the new master). "
              "The first errors each client raised, per tool:" % (
                  ours["seconds"], cli["seconds"], bench.ratio(cli["seconds"], ours["seconds"]),
                  bench._moves.DEFAULT_CLIENT_GRACE), ""]
    for result in runs:
        for name, _acknowledged, errors in result["clients"]:
            if errors:
                lines.append("- %s, %s: %s" % (result["tool"], name, "; ".join(e.replace("|", "/") for e in errors[:2])))
    if not any(errors for result in runs for _name, _acknowledged, errors in result["clients"]):
        lines.append("- none")
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    dataset = bench.Dataset("clients", [b"key:%d" % index for index in range(bench.KEYS_A)], bench.VALUE_A)
    runs = [run("redis_cluster_rebalance, default options", dataset, bench.ours_rebalance()),
            run("redis_cluster_rebalance, `client_grace: 0`", dataset, bench.ours_rebalance(client_grace=0)),
            run("`redis-cli --cluster rebalance --cluster-use-empty-masters`", dataset, bench.cli_rebalance())]
    section = report(runs, dataset, (load_before, os.getloadavg()[0]), time.perf_counter() - started)
    print(section)
    if os.environ.get("BENCH_NO_DOCS") != "1":
        write_section(SECTION, section)
        bench.log("wrote %s" % os.path.relpath(DOCS, ROOT))
    return 0


if __name__ == "__main__":
    run_main(main)
