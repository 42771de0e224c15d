#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench-versions: draining a master on each server the collection is tested with, against that server's cli.

Servers: the host's redis-server, and Debian 13's Redis 8.0 and Valkey 8.1 run from the cached servers root file
system (tests/lib/rootfs_servers.py; `make versions-rootfs` builds it). Per server, in one run and alternating, each
tool gets a fresh cluster of 3 masters with a replica each (formed by that server's cli) holding the same keys, and
drains the master of slot 0 into the other two: redis_cluster_rebalance with that master's weight 0 (a one-task
ansible-playbook) and `<cli> --cluster rebalance --cluster-weight <id>=0`. Valkey 8 masters with replicas hold each
CLUSTER SETSLOT until their replicas have taken it, which is what the comparison shows most.

Measured per run: wall time until the tool returned, and until every node agreed again (the module returns only
then; the cli earlier). After every run the keys on the masters must equal the keys written and the cli's
--cluster check must pass. The markdown goes to stdout and into docs/benchmarks.md under "## versions"; progress
goes to stderr.

Environment: BENCH_KEYS (keys written, default 20000), BENCH_ROUNDS (runs per tool and server, default 3),
BENCH_NO_DOCS=1 (print only).
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from bench_docs import run_main, write_section  # noqa: E402
from cluster_checks import slot_owner  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
VALUE = b"v" * 100
TOOLS = ("cli", "module")


def write_keys(nodes) -> None:
    """KEYS keys of VALUE, through a cluster client: every tool's cluster gets the same ones."""
    from redis.cluster import RedisCluster  # pylint: disable=import-outside-toplevel
    client = RedisCluster(host=nodes[0].host, port=nodes[0].port)
    try:
        for start in range(0, KEYS, 1000):
            pipe = client.pipeline()
            for index in range(start, min(KEYS, start + 1000)):
                pipe.set(b"key:%d" % index, VALUE)
            pipe.execute()
    finally:
        client.close()


def drain_with_cli(cli: str, seed, drained) -> None:
    subprocess.run([cli, "--cluster", "rebalance", seed.address, "--cluster-weight", "%s=0" % drained.node_id(),
                    "--cluster-yes"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def drain_with_module(seed, drained) -> float:
    """The module's own elapsed time, from a one-task ansible-playbook."""
    from playbook_runs import run_module  # pylint: disable=import-outside-toplevel
    result = run_module("redis_cluster_rebalance", {"nodes": [{"host": seed.host, "port": seed.port}],
                                                    "weights": {drained.address: 0}})
    if result.get("failed") or not result.get("changed"):
        raise RuntimeError("redis_cluster_rebalance did not drain: %s" % result.get("msg"))
    return result["elapsed_ms"] / 1000.0


def one_run(tool: str) -> dict:
    """A fresh 3 + 3 cluster, KEYS keys, the drain of slot 0's master by tool; its times, checked."""
    from redis_harness import REDIS_CLI, RedisNodes, form_cluster, wait_converged  # pylint: disable=import-outside-toplevel
    with RedisNodes(6) as nodes:
        form_cluster(nodes, replicas=1, timeout=60)
        write_keys(nodes)
        drained = slot_owner(nodes, 0)
        seed = next(node for node in nodes if node is not drained)
        started = time.monotonic()
        module_s = drain_with_module(seed, drained) if tool == "module" else None
        if tool == "cli":
            drain_with_cli(REDIS_CLI, seed, drained)
        returned = time.monotonic() - started
        wait_converged(nodes, timeout=120)
        converged = time.monotonic() - started
        keys = sum(node.call("DBSIZE") for node in nodes if node.call("ROLE")[0] == b"master")
        check = subprocess.run([REDIS_CLI, "--cluster", "check", seed.address], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, check=False)
        return {"returned": returned, "converged": converged, "module": module_s, "keys": keys,
                "check": check.returncode == 0 and "[ERR]" not in check.stdout}


def child(server: str) -> int:
    """Every run on the server REDIS_SERVER names, as JSON lines on stdout."""
    for round_index in range(ROUNDS):
        for tool in TOOLS:
            run = one_run(tool)
            run.update(server=server, tool=tool)
            print(json.dumps(run), flush=True)
            print("%s: %s run %d/%d: %.1f s" % (server, tool, round_index + 1, ROUNDS, run["converged"]),
                  file=sys.stderr)
    return 0


def server_version(env: dict) -> str:
    words = subprocess.run([env.get("REDIS_SERVER", "redis-server"), "--version"], stdout=subprocess.PIPE,
                           text=True, check=True, env=env).stdout.split()
    name = "Valkey" if words and words[0].lower() == "valkey" else "Redis"
    return "%s %s" % (name, next(word[2:] for word in words if word.startswith("v=")))


def servers(workdir: str) -> list:
    """(label, environment) per server: the host's, then the servers tree's."""
    import nspawn_hosts  # pylint: disable=import-outside-toplevel
    from rootfs_servers import SERVERS, unavailable_reason, write_wrappers  # pylint: disable=import-outside-toplevel
    found = [("host", dict(os.environ))]
    reason = unavailable_reason()
    if reason:
        print("only the host's server: %s" % reason, file=sys.stderr)
        return found
    root = nspawn_hosts.servers_rootfs()
    for server in sorted(SERVERS, reverse=True):
        directory = os.path.join(workdir, server)
        os.mkdir(directory)
        found.append((server, dict(os.environ, **write_wrappers(root, server, directory))))
    return found


def median(runs, field: str) -> float:
    return statistics.median(run[field] for run in runs)


def report(results: list, load: tuple) -> str:
    import ansible.release  # pylint: disable=import-outside-toplevel
    import redis  # pylint: disable=import-outside-toplevel
    lines = [
        "## versions: draining a master",
        "",
        "Measured by `make bench-versions` (`bench/versions_bench.py`) on %s: %d cores, redis-py %s, ansible-core %s. "
        "Per server, 3 masters with a replica each (formed by that server's cli), %d keys of %d bytes; the master "
        "of slot 0 is drained into the other two (5462 slots) by `redis_cluster_rebalance` with its weight 0 (a "
        "one-task ansible-playbook) and by the server's own `--cluster rebalance --cluster-weight <id>=0`, each on a "
        "fresh cluster, alternating, median of %d runs. \"converged\": until every node agrees again (the module "
        "returns only then). Every run kept every key and passed the cli's `--cluster check`. Load average (1 min) "
        "when the run started and ended: %.1f and %.1f; compare the ratios, not the absolute times."
        % (datetime.date.today().isoformat(), os.cpu_count(), redis.__version__, ansible.release.__version__, KEYS,
           len(VALUE), ROUNDS, load[0], load[1]),
        "",
        "| server | cli returned (s) | cli converged (s) | module returned (s) | module's own time (s) "
        "| ours / cli (converged) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, runs in results:
        cli = [run for run in runs if run["tool"] == "cli"]
        ours = [run for run in runs if run["tool"] == "module"]
        lines.append("| %s | %.2f | %.2f | %.2f | %.2f | **%.2f** |" % (
            label, median(cli, "returned"), median(cli, "converged"), median(ours, "returned"),
            median(ours, "module"), median(ours, "converged") / median(cli, "converged")))
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as workdir:
        for name, env in servers(workdir):
            label = "%s (%s)" % (server_version(env), "host" if name == "host" else "Debian 13")
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name], env=env,
                                  stdout=subprocess.PIPE, text=True, check=False)
            if proc.returncode != 0:
                print("%s: the runs failed" % label, file=sys.stderr)
                return 1
            runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            broken = [run for run in runs if run["keys"] != KEYS or not run["check"]]
            if broken:
                print("%s: a run lost keys or failed the check: %s" % (label, broken), file=sys.stderr)
                return 1
            results.append((label, runs))
    text = report(results, (load_before, os.getloadavg()[0]))
    print(text)
    if not os.environ.get("BENCH_NO_DOCS"):
        write_section("## versions: draining a master", text)
    return 0


if __name__ == "__main__":
    run_main(main)
