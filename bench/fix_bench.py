# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: repairing many open slots - redis_cluster_fix against `redis-cli --cluster fix`.

The scenario of Redis' own test tests/cluster/tests/21-many-slot-migration.tcl: a cluster of 10 masters and
10 replicas, 40 000 keys `key:N` with values `val:N`, then slots 0-999 opened one by one: `SETSLOT MIGRATING`
on the slot's owner towards a master picked at random among the others, `SETSLOT IMPORTING` on that master
(no key moves). The test then runs `redis-cli --cluster fix <owner>` and reads every key back.

Every run builds two identical twin clusters (same nodes in the same order, same keys, the same slots opened
towards the same masters, picked with a fixed seed), both alive for the whole run. One is repaired by
redis_cluster_fix through a one-task ansible-playbook (seeded with the owner, as the test seeds redis-cli), the
other by `redis-cli --cluster fix <owner> --cluster-yes`; which goes first alternates between runs. After each
tool: every node agrees and reports cluster_state:ok (the time this took after the tool returned is reported),
`redis-cli --cluster check` is clean, and every key is read back from its owner with its value, with no key
anywhere else. Runs: BENCH_REPEATS (3); reported: each tool's median time and the median of the
runs' ratios (the twins of one run share the machine's load, which drifts between runs).

The markdown goes to stdout and into docs/benchmarks.md under "## fix: many open slots"; progress to stderr.
Environment: BENCH_FIX_KEYS, BENCH_FIX_SLOTS, BENCH_REPEATS (smaller runs while trying it), BENCH_NO_DOCS=1.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import subprocess
import sys
import time

from migrate_bench import (
    COLLECTIONS_PATH, Dataset, InProcessModule, cluster_check, dbsize_total, log, median_run, playbook_run, resp,
    send_all, server_rows, server_time, slot_owners, timed_steps,
)
from migrate_bench import build as build_cluster
from bench_docs import DOCS, run_main, versions, write_section
from redis_harness import REDIS_CLI, REDIS_SERVER, RedisNodes, wait_converged

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.redisops.cluster.plugins.module_utils import _change, _executor, _module  # noqa: E402
from ansible_collections.redisops.cluster.plugins.modules import redis_cluster_fix as fix_module  # noqa: E402

SECTION = "## fix: many open slots"
MASTERS = 10
REPLICAS = 1  # per master, as create_cluster 10 10 in the Redis test
KEYS = int(os.environ.get("BENCH_FIX_KEYS", "40000"))
OPEN_SLOTS = int(os.environ.get("BENCH_FIX_SLOTS", "1000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
SEED = 21
TARGET_RATIO = 0.5
CONVERGE_TIMEOUT = 60.0
TEST_URL = "https://github.com/redis/redis/blob/7.0/tests/cluster/tests/21-many-slot-migration.tcl"


def dataset() -> Dataset:
    data = Dataset("fix", [b"key:%d" % index for index in range(KEYS)], 0)
    data.value = lambda index: b"val:%d" % index
    return data


# ---------------------------------------------------------------------------------------------
# The twins, broken the same way


def build(data: Dataset) -> RedisNodes:
    """MASTERS masters with REPLICAS replicas each, formed by redis-cli, the keys written to their owners."""
    return build_cluster(MASTERS, data, empty_master=False, replicas=REPLICAS)


def layout(nodes) -> dict:
    """slot -> index (in nodes) of the master that serves it."""
    index_of = {node.port: index for index, node in enumerate(nodes)}
    return {slot: index_of[port] for port, slots in slot_owners(nodes[0]).items() for slot in slots}


def choose_moves(nodes) -> list:
    """(slot, owner index, target index) for slots 0..OPEN_SLOTS-1: as the test's masternode_notfor_slot, a master
    other than the owner picked at random (seeded, so every run and both twins open the same slots the same way)."""
    owners = layout(nodes)
    masters = sorted(set(owners.values()))
    rng = random.Random(SEED)
    return [(slot, owners[slot], rng.choice([index for index in masters if index != owners[slot]]))
            for slot in range(OPEN_SLOTS)]


def break_open(nodes, moves) -> None:
    """For every slot, SETSLOT MIGRATING on its owner then IMPORTING on the chosen master (each node's commands
    in one pipeline, owners first, as the test sends them slot by slot: the end state is the same)."""
    ids = {index: node.node_id() for index, node in enumerate(nodes)}
    for how, side, partner in ((b"MIGRATING", 1, 2), (b"IMPORTING", 2, 1)):  # positions in a move
        by_node = {}
        for move in moves:
            by_node.setdefault(move[side], []).append(
                resp([b"CLUSTER", b"SETSLOT", b"%d" % move[0], how, ids[move[partner]].encode()]))
        for index, commands in by_node.items():
            send_all(nodes[index].host, nodes[index].port, commands)
    views = [nodes[index].cluster_nodes() for index in {move[1] for move in moves} | {move[2] for move in moves}]
    opened = sum(view.count("->-") + view.count("-<-") for view in views)
    if opened != 2 * len(moves):
        raise RuntimeError("%d open-slot markers, expected %d" % (opened, 2 * len(moves)))


# ---------------------------------------------------------------------------------------------
# The tools


def ours(nodes, seed) -> dict:
    try:
        result, wall = playbook_run("redis_cluster_fix", {"login_host": seed.host, "login_port": seed.port})
    except RuntimeError as exc:
        return {"seconds": None, "error": str(exc).splitlines()[0]}
    actions = {}
    for step in result["plan_steps"]:
        actions[step["action"]] = actions.get(step["action"], 0) + 1
    return {"seconds": wall, "apply_ms": result.get("apply_ms"), "elapsed_ms": result.get("elapsed_ms"),
            "keys_moved": result.get("keys_moved"), "actions": actions, "changed": result.get("changed"),
            "result_bytes": len(json.dumps(result))}


def cli_fix(nodes, seed) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([REDIS_CLI, "--cluster", "fix", seed.address, "--cluster-yes"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False, timeout=900)
    took = time.perf_counter() - started
    # The Redis test tolerates a non-zero exit ("nodes don't agree") and relies on the checks after it; so do we.
    return {"seconds": took, "rc": proc.returncode,
            "error": None if proc.returncode == 0 else proc.stdout.strip().splitlines()[-1]}


# ---------------------------------------------------------------------------------------------
# Repaired fully?


def verify(nodes, seed, data: Dataset) -> dict:
    """Converged (time after the tool returned), redis-cli check, every key on its owner with its value."""
    started = time.perf_counter()
    try:
        wait_converged(nodes.nodes, timeout=CONVERGE_TIMEOUT)
        converged = time.perf_counter() - started
    except RuntimeError:
        converged = None
    check = cluster_check(seed)
    owner_of = {slot: port for port, slots in slot_owners(nodes[0]).items() for slot in slots}
    by_owner, unserved = {}, 0
    for slot, indexes in data.by_slot.items():
        if slot in owner_of:
            by_owner.setdefault(owner_of[slot], []).extend(indexes)
        else:
            unserved += len(indexes)
    wrong = unserved
    for node in nodes:
        indexes = by_owner.get(node.port, [])
        if not indexes:
            continue
        with node.client() as conn:
            pipe = conn.pipeline(transaction=False)
            for index in indexes:
                pipe.get(data.keys[index])
            values = pipe.execute(raise_on_error=False)
        wrong += sum(1 for index, value in zip(indexes, values) if value != data.value(index))
    return {"converge_s": converged, "check": check, "wrong": wrong, "total": dbsize_total(nodes),
            "served": len(owner_of)}


def repaired(check: dict, expected: int) -> bool:
    return (check["converge_s"] is not None and check["check"] == "ok" and check["wrong"] == 0
            and check["total"] == expected and check["served"] == 16384)


def one_run(number: int, data: Dataset) -> dict:
    log("run %d: building the twins" % number)
    with build(data) as twin_a, build(data) as twin_b:
        if layout(twin_a) != layout(twin_b):
            raise RuntimeError("the twins' slot layouts differ")
        moves = choose_moves(twin_a)
        for twin in (twin_a, twin_b):
            break_open(twin, moves)
        seed_index = moves[-1][1]  # the test fixes through nodefrom(addr), the owner of the last slot opened
        tools = [("ours", ours, twin_a), ("redis-cli", cli_fix, twin_b)]
        if number % 2 == 0:
            tools.reverse()
        outcome = {}
        for name, tool, twin in tools:
            log("  %s: repairing %d open slots" % (name, len(moves)))
            measured = tool(twin, twin[seed_index])
            measured.update(verify(twin, twin[seed_index], data))
            measured["repaired"] = repaired(measured, len(data))
            log("  %s: %s s, converged %s s later, check %s, %d keys wrong or missing, %d keys in all%s"
                % (name, fmt(measured["seconds"]), fmt(measured["converge_s"]), measured["check"], measured["wrong"],
                   measured["total"], "" if not measured.get("error") else "; error: " + measured["error"]))
            outcome[name] = measured
        outcome["first"] = tools[0][0]
        outcome["targets"] = len({move[2] for move in moves})
        outcome["keys_open"] = sum(len(data.by_slot.get(move[0], ())) for move in moves)
    return outcome


# ---------------------------------------------------------------------------------------------
# Where the module's time goes: its fix() in this process, on one more twin, the functions it calls timed


def breakdown(data: Dataset) -> dict:
    """fix() with the module's defaults; timers around observing, counting keys, planning and every step action."""
    log("in-process breakdown of the module's time")
    timings = {}
    patches = [(fix_module, "observe_cluster", "observe the cluster (discovery)"),
               (fix_module, "count_keys", "count keys per slot (CLUSTER COUNTKEYSINSLOT), before planning and after"),
               (fix_module, "plan_fix", "plan (plan_fix)"),
               (_change, "observe_nodes", "observe the nodes after the repair"),
               (_executor.Executor, "run", "apply (Executor.run)"),
               (_executor.Executor, "_migrate_all", "steps migrate_slots"),
               (_executor.Executor, "_wait", "steps wait_converged")]
    with build(data) as nodes:
        moves = choose_moves(nodes)
        break_open(nodes, moves)
        seed = nodes[moves[-1][1]]
        spec = _module.connection_argument_spec()
        spec.update(_change.change_argument_spec())
        params = {name: option.get("default") for name, option in spec.items()}
        # redis_cluster_fix's own options with their documented defaults.
        params.update(login_host=seed.host, login_port=seed.port, forget_failed=False, allow_unreachable_masters=False,
                      replace=False, pipeline=1000, timeout=60000)
        for node in nodes:
            node.call("CONFIG", "RESETSTAT")
        with timed_steps(timings, patches):
            started = time.perf_counter()
            result = fix_module.fix(InProcessModule(params))
            total = time.perf_counter() - started
        server = server_time(nodes)
        check = verify(nodes, seed, data)
    steps = {}
    for step in result["plan_steps"]:
        steps[step["action"]] = steps.get(step["action"], 0) + 1
    log("  fix() %.2f s, apply_ms %s; repaired %s" % (total, result.get("apply_ms"), repaired(check, len(data))))
    return {"total": total, "apply_ms": result.get("apply_ms"), "timings": timings, "steps": steps, "server": server,
            "repaired": repaired(check, len(data)), "result_bytes": len(json.dumps(result))}


def breakdown_lines(diag: dict) -> list:
    lines = ["Where the module's time goes: its `fix()` with default options in the benchmark process, on one more "
             "twin broken the same way, the functions it calls wrapped with timers (fix() %.2f s, `apply_ms` %s, "
             "repaired: %s). \"steps X\" is the time of the plan's steps of action X (their count in the calls "
             "column); the result the module hands to Ansible is %d bytes of JSON."
             % (diag["total"], diag["apply_ms"], "yes" if diag["repaired"] else "**no**", diag["result_bytes"]), "",
             "| step (in process) | calls | ms |", "| --- | ---: | ---: |"]
    for name, (calls, took) in sorted(diag["timings"].items(), key=lambda item: -item[1][1]):
        if name.startswith("steps "):
            calls = diag["steps"].get(name[len("steps "):], calls)
        lines.append("| %s | %d | %.0f |" % (name, calls, 1000 * took))
    lines += server_rows(diag["server"], ("cluster|setslot", "migrate", "restore-asking", "cluster|getkeysinslot",
                                          "cluster|countkeysinslot"))
    return lines


# ---------------------------------------------------------------------------------------------
# The report


def fmt(seconds) -> str:
    return "-" if seconds is None else "%.2f" % seconds


def state(run: dict) -> str:
    if run["repaired"]:
        return "yes"
    problems = []
    if run.get("error"):
        problems.append("tool failed: %s" % run["error"])
    if run["converge_s"] is None:
        problems.append("no agreement within %.0f s" % CONVERGE_TIMEOUT)
    if run["check"] != "ok":
        problems.append("check: %s" % run["check"])
    if run["wrong"]:
        problems.append("%d keys missing or wrong" % run["wrong"])
    if run["served"] != 16384:
        problems.append("%d slots served" % run["served"])
    return "**no** (%s)" % "; ".join(problems).replace("|", "/")


def middle(values: list) -> float:
    return sorted(values)[len(values) // 2]


def ratio(ours_seconds, cli_seconds):
    return ours_seconds / cli_seconds if ours_seconds is not None and cli_seconds else None


def report(runs: list, diag: dict, load: tuple, total: float) -> str:
    first = runs[0]
    lines = [SECTION, "",
             "Measured by `make bench` (`bench/fix_bench.py`) on %s: %d cores, %s. The scenario of Redis' own test "
             "[`21-many-slot-migration.tcl`](%s): %d masters with %d replica each (`redis-cli --cluster create`), "
             "%d keys `key:N` = `val:N`, then slots 0-%d opened: `CLUSTER SETSLOT <slot> MIGRATING` on the slot's "
             "owner towards a master picked at random among the others (%d distinct targets), `SETSLOT IMPORTING` on "
             "that master; no key moved (%d keys sit in the open slots). Each run builds two identical twin clusters "
             "and breaks both the same way; `redisops.cluster.redis_cluster_fix` (one-task `ansible-playbook`, "
             "default options) repairs one, `redis-cli --cluster fix <owner> --cluster-yes` the other, both seeded "
             "with the owner of the open slots as the test does; the tool that goes first alternates between runs. "
             "Repaired means: every node agrees and reports cluster_state:ok within %.0f s after the tool returned "
             "(the time this took is shown), `redis-cli --cluster check` is clean, every key is read from its owner "
             "with its value and the masters hold no other key. Load average (1 min) at the start and the end: %.1f "
             "and %.1f. Whole run: %.0f s."
             % (datetime.date.today().isoformat(), os.cpu_count(), versions(REDIS_SERVER), TEST_URL, MASTERS, REPLICAS,
                KEYS, OPEN_SLOTS - 1, first["targets"], first["keys_open"], CONVERGE_TIMEOUT, load[0], load[1], total),
             "",
             "| run | first | ours: ansible-playbook wall (s) | ours: `elapsed_ms` | ours: `apply_ms` | ours: converged "
             "after (s) | ours repaired | redis-cli fix wall (s) | redis-cli: converged after (s) | redis-cli repaired "
             "| ratio ours wall / redis-cli | ratio `apply_ms` / redis-cli |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |"]
    for number, run in enumerate(runs, 1):
        ours_run, cli = run["ours"], run["redis-cli"]
        apply_s = ours_run["apply_ms"] / 1000.0 if ours_run.get("apply_ms") is not None else None
        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                     % (number, run["first"], fmt(ours_run["seconds"]),
                        "-" if ours_run.get("elapsed_ms") is None else ours_run["elapsed_ms"],
                        "-" if ours_run.get("apply_ms") is None else ours_run["apply_ms"],
                        fmt(ours_run["converge_s"]), state(ours_run), fmt(cli["seconds"]), fmt(cli["converge_s"]),
                        state(cli), fmt(ratio(ours_run["seconds"], cli["seconds"])),
                        fmt(ratio(apply_s, cli["seconds"]))))
    timed = [run for run in runs if run["ours"]["seconds"] is not None]
    if timed:
        ours_median = median_run([run["ours"] for run in timed])
        cli_median = median_run([run["redis-cli"] for run in runs])
        apply_median = median_run([dict(seconds=run["ours"]["apply_ms"] / 1000.0) for run in timed])
        # The twins of one run share the machine's load, which drifts between runs: the ratio of each run counts.
        measured = middle([ratio(run["ours"]["seconds"], run["redis-cli"]["seconds"]) for run in timed])
        measured_apply = middle([ratio(run["ours"]["apply_ms"] / 1000.0, run["redis-cli"]["seconds"]) for run in timed])
        lines += ["", "Medians of %d runs: ours %.2f s (ansible-playbook wall), `apply_ms` %.2f s; redis-cli %.2f s."
                  % (len(runs), ours_median["seconds"], apply_median["seconds"], cli_median["seconds"]),
                  "", "Target, ours / redis-cli wall time <= %.1f (median of the runs' ratios): measured **%.2f** - %s "
                  "(`apply_ms` / redis-cli: %.2f)."
                  % (TARGET_RATIO, measured, "**met**" if measured <= TARGET_RATIO else "**not met**", measured_apply)]
        actions = ours_median.get("actions") or {}
        lines += ["", "Our plan in the run of median time (steps by action): %s; keys moved %s; the module's result "
                  "%d bytes of JSON."
                  % (", ".join("%s %d" % (action, count) for action, count in sorted(actions.items())),
                     ours_median.get("keys_moved"), ours_median["result_bytes"])]
    else:
        lines += ["", "Target, ours / redis-cli wall time <= %.1f: **not met** - the module failed in every run."
                  % TARGET_RATIO]
    lines += [""] + breakdown_lines(diag)
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    data = dataset()
    runs = [one_run(number, data) for number in range(1, REPEATS + 1)]
    diag = breakdown(data)
    total = time.perf_counter() - started
    section = report(runs, diag, (load_before, os.getloadavg()[0]), total)
    print(section)
    if os.environ.get("BENCH_NO_DOCS") != "1":
        write_section(SECTION, section)
        log("wrote %s" % DOCS)
    log("total %.0f s" % total)
    return 0 if diag["repaired"] and all(run["ours"]["repaired"] and run["redis-cli"]["repaired"] for run in runs) else 1


if __name__ == "__main__":
    run_main(main)
