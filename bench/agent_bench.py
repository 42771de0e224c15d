# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cost of one run of the Redis Cluster agent: CPU time and peak memory for 8 local instances of a 60-node cluster.

The agent is laid out as the role lays it out (the program beside a package of the collection's module_utils files
that vars/main.yml names, byte-compiled) and run as its service runs it (python -I program settings), under
/usr/bin/time. Two baselines tell the fixed part: the interpreter alone, and the interpreter with the agent's imports.
The table goes to stdout and into docs/benchmarks.md under "## redis_cluster_agent".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from redis_harness import REDIS_SERVER, RedisNodes, form_cluster  # noqa: E402
from bench_docs import DOCS, run_main, versions, write_section  # noqa: E402

NODES = 60
REPLICAS = 1
LOCAL_INSTANCES = 8
PASSWORD = "agent-bench"
SECTION = "## redis_cluster_agent"
ROLE = os.path.join(ROOT, "roles", "redis_cluster_agent")
AGENT_CASE = "the agent, %d instances" % LOCAL_INSTANCES
IMPORTS_CASE = "baseline: the interpreter and the agent's imports"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lay_out_agent(directory: str) -> str:
    """The program and its package as the role installs them; the program's path."""
    with open(os.path.join(ROLE, "vars", "main.yml")) as handle:
        shared = yaml.safe_load(handle)["redis_cluster_agent_shared_modules"]
    package = os.path.join(directory, "redisops_cluster")
    os.makedirs(package)
    for name in shared:
        shutil.copy(os.path.join(ROOT, "plugins", "module_utils", name + ".py"), package)
    open(os.path.join(package, "__init__.py"), "w").close()
    program = os.path.join(directory, "redis_cluster_agent.py")
    shutil.copy(os.path.join(ROLE, "files", "redis_cluster_agent.py"), program)
    subprocess.run([sys.executable, "-m", "compileall", "-q", directory], check=True)
    return program


def timed(command) -> dict:
    """One run under /usr/bin/time: wall and CPU seconds, peak resident memory in KiB."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M"] + command, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True, timeout=120)
    wall, user, system, peak = proc.stderr.strip().splitlines()[-1].split()
    return {"wall": float(wall), "cpu": float(user) + float(system), "user": float(user), "system": float(system),
            "peak_kib": int(peak)}


def measure(command, runs: int) -> dict:
    samples = [timed(command) for _run in range(runs)]
    return {key: (statistics.median(s[key] for s in samples), min(s[key] for s in samples),
                  max(s[key] for s in samples)) for key in samples[0]}


def report(cases: dict, runs: int, facts_size: int, loads: tuple) -> str:
    lines = [
        SECTION, "",
        "Measured by `make bench` (`bench/agent_bench.py`) on %s: %d cores, %s. %d nodes (%d masters + %d replicas, "
        "formed with `redis-cli --cluster create`, with a password); the agent reads %d of them, as on a host that "
        "runs 8 instances, laid out and started as its service starts it (`python -I redis_cluster_agent.py "
        "agent.json`, byte-compiled code, the password from a file), under `/usr/bin/time`, %d runs each. "
        "Load average (1 min) when the runs started and ended: %.1f and %.1f; other processes' work on the machine "
        "shows up as noise." % (time.strftime("%Y-%m-%d"), os.cpu_count(), versions(REDIS_SERVER), NODES,
                                NODES // (REPLICAS + 1), NODES - NODES // (REPLICAS + 1), LOCAL_INSTANCES, runs,
                                loads[0], loads[1]),
        "",
        "| run | CPU time (user + sys) median (min - max) | wall time median | peak memory (max RSS) median (max) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, figures in cases.items():
        cpu, wall, peak = figures["cpu"], figures["wall"], figures["peak_kib"]
        lines.append("| %s | %.0f ms (%.0f - %.0f) | %.0f ms | %.1f MiB (%.1f) |" % (
            name, cpu[0] * 1000, cpu[1] * 1000, cpu[2] * 1000, wall[0] * 1000, peak[0] / 1024, peak[2] / 1024))
    agent, imports = (figures["cpu"][0] * 1000 for figures in (cases[AGENT_CASE], cases[IMPORTS_CASE]))
    lines += [
        "",
        "Of the agent's median CPU time, %.0f ms go to starting the interpreter and importing its modules (redis-py "
        "above all, which imports its asyncio client too) and %.0f ms to its own work: reading %d instances, "
        "building their facts and writing the file (%d bytes). `/usr/bin/time` counts CPU in 10 ms ticks. At the "
        "default interval (30 s), a run's CPU time is the agent's whole cost, spread over the interval." % (
            imports, agent - imports, LOCAL_INSTANCES, facts_size),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="redisops-agent-bench-")
    try:
        program = lay_out_agent(os.path.join(work, "agent"))
        with RedisNodes(NODES, password=PASSWORD) as nodes:
            log("forming a cluster of %d nodes" % NODES)
            form_cluster(nodes.nodes, replicas=REPLICAS, timeout=180)
            password_file = os.path.join(work, "password")
            with open(password_file, "w") as handle:
                handle.write(PASSWORD + "\n")
            facts_file = os.path.join(work, "redis_cluster.fact")
            settings = os.path.join(work, "agent.json")
            with open(settings, "w") as handle:
                json.dump({"host": "127.0.0.1", "ports": [node.port for node in nodes.nodes[:LOCAL_INSTANCES]],
                           "interval": 30, "facts_file": facts_file, "password_file": password_file}, handle)
            load_before = os.getloadavg()[0]
            cases = {
                AGENT_CASE: measure([sys.executable, "-I", program, settings], args.runs),
                "baseline: the interpreter alone": measure([sys.executable, "-I", "-c", "pass"], args.runs),
                IMPORTS_CASE: measure(
                    [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, %r); import redis_cluster_agent"
                     % os.path.dirname(program)], args.runs),
            }
            with open(facts_file) as handle:
                facts = json.load(handle)
            errors = {port: entry["error"] for port, entry in facts["instances"].items() if entry["error"]}
            if len(facts["instances"]) != LOCAL_INSTANCES or errors:
                log("the agent did not report every instance: %s" % errors)
                return 1
            section = report(cases, args.runs, os.path.getsize(facts_file), (load_before, os.getloadavg()[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(section)
    if not args.no_docs:
        write_section(SECTION, section)
        log("wrote %s" % os.path.relpath(DOCS, ROOT))
    return 0


if __name__ == "__main__":
    run_main(main)
