# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: node lifecycle - redis_cluster_node against redis-cli and against redis_cluster_rebalance.

Case A (remove a master): 4 masters (no replicas) formed by `redis-cli --cluster create`, each holding exactly
BENCH_NODE_KEYS (200 000) keys `key:N` of 100 bytes (names taken in order while their slot's master holds fewer).
Each run builds two identical twins. On one, redis_cluster_node `state: absent` removes the last master through a
one-task ansible-playbook (drain and forget in one task); on the other, what an operator runs with redis-cli: one
`redis-cli --cluster reshard --cluster-from <leaving> --cluster-to <receiver> --cluster-slots <share>
--cluster-yes` per remaining master (an equal share each), then `redis-cli --cluster del-node <seed> <leaving>`.
Which goes first alternates between runs.
Case B (add a master): 3 masters holding BENCH_NODE_KEYS_B (200 000) keys; a fresh empty node. On one twin,
redis_cluster_node `role: master`, `rebalance: true` adds it (meet, wait until every node knows it, rebalance); on
the other the node is met beforehand (CLUSTER MEET, then every node agrees and reports cluster_state:ok, untimed)
and redis_cluster_rebalance alone moves its share onto it.

After every tool: every node that stays agrees and reports cluster_state:ok, the sum of DBSIZE over the masters
equals the keys written, `redis-cli --cluster check` passes; in case A no remaining node lists the removed one in
CLUSTER NODES. Reported per run: both wall times and their ratio (twins of one run share the machine's load, which
drifts between runs, so the target is judged on the median of the runs' ratios). Each case also runs the module once
more in this process, on one more twin, its executor's steps timed: where its time goes.

The markdown goes to stdout and into docs/benchmarks.md under "## node lifecycle"; progress to stderr.
Environment: BENCH_NODE_KEYS, BENCH_NODE_KEYS_B, BENCH_REPEATS (smaller runs while trying it), BENCH_NO_DOCS=1.
"""

from __future__ import annotations

import datetime
import functools
import os
import sys
import time

from migrate_bench import (
    COLLECTIONS_PATH, Dataset, InProcessModule, census, check_loaded, cluster_check, connection_argument_spec, key_slot,
    load, log, node_ids, playbook_run, redis_cli, server_rows, server_time, slot_owners, timers,
)
from migrate_bench import build as build_cluster
from fix_bench import layout, middle
from bench_docs import DOCS, run_main, versions, write_section
from redis_harness import REDIS_SERVER, RedisNodes, form_cluster, wait_converged

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.redisops.cluster.plugins.module_utils import _executor  # noqa: E402
from ansible_collections.redisops.cluster.plugins.modules import redis_cluster_node  # noqa: E402

SECTION = "## node lifecycle"
MASTERS_A = 4
KEYS_PER_MASTER = int(os.environ.get("BENCH_NODE_KEYS", "200000"))
MASTERS_B = 3
KEYS_B = int(os.environ.get("BENCH_NODE_KEYS_B", "200000"))
VALUE = 100
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
REMOVE_TARGET = 1 / 8  # ours / redis-cli wall time, at most
ADD_TARGET = 1.10  # ours / redis_cluster_rebalance alone, at most
CONVERGE_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# Case A: the twins, every master holding the same number of keys


@functools.lru_cache(maxsize=None)
def quota_dataset(owners: tuple, per_master: int) -> Dataset:
    """`key:N` names taken in order while the master of their slot (owners[slot], an index) holds fewer than
    per_master: every master ends up holding exactly per_master keys."""
    held = {index: 0 for index in set(owners)}
    keys, slots, index = [], [], 0
    while min(held.values()) < per_master:
        key = b"key:%d" % index
        slot = key_slot(key)
        if held[owners[slot]] < per_master:
            held[owners[slot]] += 1
            keys.append(key)
            slots.append(slot)
        index += 1
    return Dataset("remove", keys, VALUE, slots=slots)


def build_removal_twin() -> tuple:
    """MASTERS_A masters formed by redis-cli, each holding KEYS_PER_MASTER keys: (nodes, the dataset)."""
    started = time.perf_counter()
    nodes = RedisNodes(MASTERS_A)
    try:
        form_cluster(nodes.nodes, replicas=0, timeout=60)
        owners = layout(nodes)
        data = quota_dataset(tuple(owners[slot] for slot in range(16384)), KEYS_PER_MASTER)
        load(nodes.nodes, data)
        check_loaded(nodes, data)
    except BaseException:
        nodes.close()
        raise
    log("  twin of %d masters built, %d keys written (%.1f s)" % (MASTERS_A, len(data), time.perf_counter() - started))
    return nodes, data


def leaving_of(nodes):
    """The master removed: the last one (the seed the tools are given is the first)."""
    return nodes[len(nodes) - 1]


# ---------------------------------------------------------------------------------------------
# Case A: the tools


def ours_remove(nodes, leaving) -> dict:
    result, wall = playbook_run("redis_cluster_node", {"login_host": nodes[0].host, "login_port": nodes[0].port,
                                                       "node": leaving.address, "state": "absent"})
    return {"seconds": wall, "elapsed_ms": result.get("elapsed_ms"), "apply_ms": result.get("apply_ms"),
            "keys_moved": result.get("keys_moved"), "slots_moved": result.get("slots_moved"),
            "changed": result.get("changed"), "steps": step_counts(result)}


def step_counts(result: dict) -> dict:
    counts = {}
    for step in result.get("plan_steps") or ():
        counts[step["action"]] = counts.get(step["action"], 0) + 1
    return counts


def equal_shares(total: int, parts: int) -> list:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def cli_remove(nodes, leaving) -> dict:
    """One reshard per remaining master (equal shares of the leaving master's slots), then del-node."""
    ids = node_ids(nodes)
    seed = nodes[0]
    receivers = [node for node in nodes if node is not leaving]
    slots = len(slot_owners(seed).get(leaving.port, ()))
    parts = []
    started = time.perf_counter()
    for receiver, share in zip(receivers, equal_shares(slots, len(receivers))):
        parts.append(redis_cli(["reshard", seed.address, "--cluster-from", ids[leaving.port], "--cluster-to",
                                ids[receiver.port], "--cluster-slots", str(share), "--cluster-yes"]))
    parts.append(redis_cli(["del-node", seed.address, ids[leaving.port]]))
    return {"seconds": time.perf_counter() - started, "parts": parts, "slots_moved": slots}


# ---------------------------------------------------------------------------------------------
# Case A: removed fully?


def removal_check(nodes, leaving, leaving_id: str, expected: int) -> dict:
    """The nodes that stay agree, hold every key and none lists the leaving node; where the leaving node is now."""
    remaining = [node for node in nodes if node is not leaving]
    started = time.perf_counter()
    try:
        wait_converged(remaining, timeout=CONVERGE_TIMEOUT)
        converged = time.perf_counter() - started
    except RuntimeError:
        converged = None
    masters = census(remaining)
    knowing = [node.address for node in remaining if leaving_id in node.cluster_nodes()]
    if leaving.process.poll() is not None:
        fate = "stopped"
    else:
        view = leaving.cluster_nodes().splitlines()
        fate = ("reset, %d key(s)" % leaving.call("DBSIZE") if len(view) == 1
                else "still knows %d node(s)" % (len(view) - 1))
    return {"converge_s": converged, "found": sum(keys for keys, _slots in masters.values()), "expected": expected,
            "knowing": knowing, "check": cluster_check(remaining[0]), "fate": fate,
            "shares": sorted(slots for _keys, slots in masters.values())}


def removed(check: dict) -> bool:
    return (check["converge_s"] is not None and check["found"] == check["expected"] and not check["knowing"]
            and check["check"] == "ok")


def removal_state(check: dict) -> str:
    if removed(check):
        return "yes"
    problems = []
    if check.get("error"):
        problems.append("tool failed: %s" % check["error"])
    if check["converge_s"] is None:
        problems.append("no agreement within %.0f s" % CONVERGE_TIMEOUT)
    if check["found"] != check["expected"]:
        problems.append("%d of %d keys" % (check["found"], check["expected"]))
    if check["knowing"]:
        problems.append("still listed by %s" % ", ".join(check["knowing"]))
    if check["check"] != "ok":
        problems.append("check: %s" % check["check"])
    return "**no** (%s)" % "; ".join(problems).replace("|", "/")


def measured_removal(name: str, tool, nodes, data: Dataset) -> dict:
    leaving = leaving_of(nodes)
    leaving_id = leaving.node_id()
    held = leaving.call("DBSIZE")
    log("  %s: removing %s, %d keys" % (name, leaving.address, held))
    try:
        measured = tool(nodes, leaving)
    except RuntimeError as exc:
        measured = {"seconds": None, "error": str(exc).splitlines()[0]}
    measured.update(removal_check(nodes, leaving, leaving_id, len(data)), held=held)
    measured["removed"] = removed(measured)
    log("  %s: %s s; %d/%d keys, listed by %d node(s), check %s, removed node %s"
        % (name, fmt(measured["seconds"]), measured["found"], measured["expected"], len(measured["knowing"]),
           measured["check"], measured["fate"]))
    return measured


def removal_run(number: int) -> dict:
    log("remove, run %d: building the twins" % number)
    twin_a, data = build_removal_twin()
    try:
        twin_b, data_b = build_removal_twin()
    except BaseException:
        twin_a.close()
        raise
    with twin_a, twin_b:
        if layout(twin_a) != layout(twin_b) or data is not data_b:
            raise RuntimeError("the twins' slot layouts differ")
        tools = [("ours", ours_remove, twin_a), ("redis-cli", cli_remove, twin_b)]
        if number % 2 == 0:
            tools.reverse()
        outcome = {name: measured_removal(name, tool, twin, data) for name, tool, twin in tools}
        outcome["first"] = tools[0][0]
    return outcome


# ---------------------------------------------------------------------------------------------
# Case A: where the module's time goes, in this process


def node_backend():
    """(the argument spec, the backend) redis_cluster_node's main() hands to run_module, without running it."""
    captured = {}
    original = redis_cluster_node.run_module
    redis_cluster_node.run_module = lambda spec, backend, **_kwargs: captured.update(spec=spec, backend=backend)
    try:
        redis_cluster_node.main()
    finally:
        redis_cluster_node.run_module = original
    return captured["spec"], captured["backend"]


def timed_backend(nodes, **given) -> dict:
    """redis_cluster_node's backend in this process with its defaults and given options, the executor's steps timed
    by action, the servers' own time per command read after it."""
    spec, backend = node_backend()
    timings = {}
    _record, timed = timers(timings)
    handlers = dict(_executor.HANDLERS)
    patches = [(_executor.Executor, "run", "apply (Executor.run)"),
               (_executor.Executor, "_migrate_all", "steps migrate_slots"),
               (_executor.Executor, "_wait", "steps wait_converged")]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _label in patches]
    params = {name: option.get("default") for name, option in dict(connection_argument_spec(), **spec).items()}
    params.update(login_host=nodes[0].host, login_port=nodes[0].port, **given)
    for node in nodes:
        node.call("CONFIG", "RESETSTAT")
    for owner, name, label in patches:
        setattr(owner, name, timed(label, getattr(owner, name)))
    for action, handler in handlers.items():
        _executor.HANDLERS[action] = timed("steps " + action, handler)
    try:
        started = time.perf_counter()
        result = backend(InProcessModule(params))
        total = time.perf_counter() - started
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
        _executor.HANDLERS.update(handlers)
    return {"total": total, "apply_ms": result.get("apply_ms"), "timings": timings, "steps": step_counts(result),
            "server": server_time(nodes)}


def removal_breakdown() -> dict:
    log("remove: in-process breakdown of the module's time")
    nodes, data = build_removal_twin()
    with nodes:
        leaving = leaving_of(nodes)
        leaving_id = leaving.node_id()
        diag = timed_backend(nodes, node=leaving.address, state="absent")
        diag["done"] = removed(removal_check(nodes, leaving, leaving_id, len(data)))
    log("  backend %.2f s, apply_ms %s; removed %s" % (diag["total"], diag["apply_ms"], diag["done"]))
    return diag


def add_breakdown(data: Dataset) -> dict:
    log("add: in-process breakdown of the module's time")
    with build_cluster(MASTERS_B, data, empty_master=False) as cluster, RedisNodes(1) as fresh:
        everyone = list(cluster) + [fresh[0]]
        diag = timed_backend(everyone, node=fresh[0].address, role="master", rebalance=True)
        diag["done"] = balanced(balanced_check(everyone, len(data)))
    log("  backend %.2f s, apply_ms %s; balanced %s" % (diag["total"], diag["apply_ms"], diag["done"]))
    return diag


def breakdown_lines(diag: dict, outcome: str) -> list:
    lines = ["Where the module's time goes: its backend with the same options in the benchmark process, on one more "
             "twin, the executor's steps wrapped with timers (backend %.2f s, `apply_ms` %s, %s: %s). \"steps X\" "
             "is the time of the plan's steps of action X (their count in the calls column); what the backend spent "
             "outside `Executor.run` is observing, counting keys and planning."
             % (diag["total"], diag["apply_ms"], outcome, "yes" if diag["done"] else "**no**"), "",
             "| step (in process) | calls | ms |", "| --- | ---: | ---: |",
             "| the backend, whole (module `elapsed_ms` less Ansible's argument handling) | 1 | %.0f |"
             % (1000 * diag["total"])]
    for name, (calls, took) in sorted(diag["timings"].items(), key=lambda item: -item[1][1]):
        if name.startswith("steps "):
            calls = diag["steps"].get(name[len("steps "):], calls)
        lines.append("| %s | %d | %.0f |" % (name, calls, 1000 * took))
    lines += server_rows(diag["server"], ("migrate", "restore-asking", "cluster|getkeysinslot", "cluster|setslot",
                                          "cluster|countkeysinslot", "cluster|meet", "cluster|forget", "cluster|reset"))
    return lines


# ---------------------------------------------------------------------------------------------
# Case B: add a master with rebalance against redis_cluster_rebalance alone


def balanced_check(nodes, expected: int) -> dict:
    try:
        wait_converged(nodes, timeout=CONVERGE_TIMEOUT)
        converged = True
    except RuntimeError:
        converged = False
    masters = census(nodes)
    shares = sorted(slots for _keys, slots in masters.values())
    return {"converged": converged, "found": sum(keys for keys, _slots in masters.values()), "expected": expected,
            "check": cluster_check(nodes[0]), "shares": shares}


def balanced(check: dict) -> bool:
    return (check["converged"] and check["found"] == check["expected"] and check["check"] == "ok"
            and check["shares"] == [16384 // (MASTERS_B + 1)] * (MASTERS_B + 1))


def module_numbers(result: dict, wall: float) -> dict:
    return {"seconds": wall, "elapsed_ms": result.get("elapsed_ms"), "apply_ms": result.get("apply_ms"),
            "keys_moved": result.get("keys_moved"), "slots_moved": result.get("slots_moved")}


def ours_add(cluster, joining) -> dict:
    result, wall = playbook_run("redis_cluster_node", {"login_host": cluster[0].host, "login_port": cluster[0].port,
                                                       "node": joining.address, "role": "master", "rebalance": True})
    return module_numbers(result, wall)


def rebalance_alone(cluster, _joining) -> dict:
    result, wall = playbook_run("redis_cluster_rebalance", {"login_host": cluster[0].host,
                                                            "login_port": cluster[0].port})
    return module_numbers(result, wall)


def measured_add(name: str, tool, cluster, joining, data: Dataset) -> dict:
    log("  %s" % name)
    everyone = list(cluster) + [joining]
    try:
        measured = tool(cluster, joining)
    except RuntimeError as exc:
        measured = {"seconds": None, "error": str(exc).splitlines()[0]}
    measured.update(balanced_check(everyone, len(data)))
    measured["balanced"] = balanced(measured)
    log("  %s: %s s (elapsed_ms %s, apply_ms %s, %s keys moved); %d/%d keys, shares %s, check %s"
        % (name, fmt(measured["seconds"]), measured.get("elapsed_ms"), measured.get("apply_ms"),
           measured.get("keys_moved"), measured["found"], measured["expected"], measured["shares"], measured["check"]))
    return measured


def add_run(number: int, data: Dataset) -> dict:
    log("add, run %d: building the twins" % number)
    with build_cluster(MASTERS_B, data, empty_master=False) as ours_twin, RedisNodes(1) as fresh, \
            build_cluster(MASTERS_B, data, empty_master=True) as their_twin:
        if layout(ours_twin) != layout(their_twin.nodes[:MASTERS_B]):
            raise RuntimeError("the twins' slot layouts differ")
        tools = [("ours", ours_add, ours_twin.nodes, fresh[0]),
                 ("redis_cluster_rebalance", rebalance_alone, their_twin.nodes[:MASTERS_B], their_twin[MASTERS_B])]
        if number % 2 == 0:
            tools.reverse()
        outcome = {name: measured_add(name, tool, cluster, joining, data) for name, tool, cluster, joining in tools}
        outcome["first"] = tools[0][0]
    return outcome


# ---------------------------------------------------------------------------------------------
# The report


def fmt(seconds) -> str:
    return "-" if seconds is None else "%.2f" % seconds


def ratio(ours, theirs):
    return ours / theirs if ours is not None and theirs else None


def ms(value) -> str:
    return "-" if value is None else "%d" % value


def removal_lines(runs: list, diag: dict) -> list:
    first = runs[0]
    held = first["ours"]["held"]
    lines = ["### A: remove a master holding %d keys" % held, "",
             "%d masters, no replicas (`redis-cli --cluster create`), each holding %d keys `key:N` of %d bytes. Ours: "
             "`redisops.cluster.redis_cluster_node` with `node: <the last master>`, `state: absent` and default "
             "options, through a one-task `ansible-playbook` (wall time, Ansible's start-up included): it drains the "
             "master's slots onto the others and forgets it everywhere in one task. redis-cli, as an operator removes "
             "a master that holds slots (`del-node` refuses one): `redis-cli --cluster reshard <seed> --cluster-from "
             "<leaving> --cluster-to <receiver> --cluster-slots <share> --cluster-yes` once per remaining master, an "
             "equal share of the leaving master's slots each (default pipeline, 10 keys per `MIGRATE`), then "
             "`redis-cli --cluster del-node <seed> <leaving>`; its time is the sum of the four commands' wall times. "
             "Removed means: the nodes that stay agree and report cluster_state:ok within %.0f s after the tool "
             "returned (the time this took is shown), the sum of DBSIZE over their masters equals the keys written, "
             "none lists the removed node in `CLUSTER NODES`, and `redis-cli --cluster check` is clean."
             % (MASTERS_A, KEYS_PER_MASTER, VALUE, CONVERGE_TIMEOUT), "",
             "| run | first | ours: wall (s) | ours: `elapsed_ms` | ours: `apply_ms` | ours: keys moved | ours: converged "
             "after (s) | ours removed | redis-cli: wall (s) (reshards, del-node) | redis-cli: converged after (s) | "
             "redis-cli removed | slots after, ours / redis-cli | removed node after, ours / redis-cli | ratio ours / "
             "redis-cli | ratio `elapsed_ms` / redis-cli |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- | --- | ---: | ---: |"]
    for number, run in enumerate(runs, 1):
        ours, cli = run["ours"], run["redis-cli"]
        parts = " (%s)" % ", ".join("%.2f" % part for part in cli["parts"]) if cli.get("parts") else ""
        elapsed = ours["elapsed_ms"] / 1000.0 if ours.get("elapsed_ms") is not None else None
        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s%s | %s | %s | %s / %s | %s / %s | %s | %s |"
                     % (number, run["first"], fmt(ours["seconds"]), ms(ours.get("elapsed_ms")), ms(ours.get("apply_ms")),
                        ms(ours.get("keys_moved")), fmt(ours["converge_s"]), removal_state(ours), fmt(cli["seconds"]),
                        parts, fmt(cli["converge_s"]), removal_state(cli), shares_text(ours), shares_text(cli),
                        ours["fate"], cli["fate"], fmt(ratio(ours["seconds"], cli["seconds"])),
                        fmt(ratio(elapsed, cli["seconds"]))))
    timed = [run for run in runs if run["ours"]["seconds"] is not None and run["redis-cli"]["seconds"] is not None]
    if timed:
        measured = middle([ratio(run["ours"]["seconds"], run["redis-cli"]["seconds"]) for run in timed])
        measured_elapsed = middle([ratio(run["ours"]["elapsed_ms"] / 1000.0, run["redis-cli"]["seconds"])
                                   for run in timed])
        lines += ["", "Medians of %d runs: ours %.2f s (ansible-playbook wall), `elapsed_ms` %d; redis-cli %.2f s."
                  % (len(timed), middle([run["ours"]["seconds"] for run in timed]),
                     middle([run["ours"]["elapsed_ms"] for run in timed]),
                     middle([run["redis-cli"]["seconds"] for run in timed])),
                  "", "Target, ours / redis-cli wall time <= 1/%d = %.3f (median of the runs' ratios): measured **%.3f** "
                  "(1/%.1f) - %s (`elapsed_ms` / redis-cli: %.3f, 1/%.1f)."
                  % (round(1 / REMOVE_TARGET), REMOVE_TARGET, measured, 1 / measured,
                     "**met**" if measured <= REMOVE_TARGET else "**not met**", measured_elapsed, 1 / measured_elapsed)]
        steps = next((run["ours"]["steps"] for run in timed if run["ours"].get("steps")), {})
        lines += ["", "Our plan (steps by action): %s." % ", ".join("%s %d" % item for item in sorted(steps.items()))]
        if "migrate" in diag["server"]:
            lines += ["", "For scale: in the breakdown run below, the `MIGRATE`s alone took %.0f ms inside the servers "
                      "(%d of them, one per slot, all from the one leaving master, each waiting for its target's "
                      "reply), and 1/%d of redis-cli's median time is %.0f ms."
                      % (diag["server"]["migrate"][1], diag["server"]["migrate"][0], round(1 / REMOVE_TARGET),
                         1000 * REMOVE_TARGET * middle([run["redis-cli"]["seconds"] for run in timed]))]
    else:
        lines += ["", "Target, ours / redis-cli wall time <= 1/%d: **not met** - no run timed both tools."
                  % round(1 / REMOVE_TARGET)]
    return lines + [""] + breakdown_lines(diag, "removed")


def shares_text(check: dict) -> str:
    return "+".join("%d" % share for share in check["shares"])


def add_lines(runs: list, data: Dataset, diag: dict) -> list:
    lines = ["### B: add a master with `rebalance: true`, %d keys" % len(data), "",
             "%d masters, no replicas, holding %d keys `key:N` of %d bytes, and a fresh empty node. Ours: "
             "`redis_cluster_node` with `node: <the new node>`, `role: master`, `rebalance: true`: it meets the node, "
             "waits until every node knows it, then moves its share onto it. Against: on the twin, the node is met "
             "beforehand (CLUSTER MEET, then every node agrees and reports cluster_state:ok; untimed) and "
             "`redis_cluster_rebalance` with default options moves its share. Both through a one-task "
             "`ansible-playbook` (wall time); after each, every node agrees, all keys are there, every master serves "
             "%d slots and `redis-cli --cluster check` is clean (\"balanced\")."
             % (MASTERS_B, len(data), VALUE, 16384 // (MASTERS_B + 1)), "",
             "| run | first | ours: wall (s) | ours: `elapsed_ms` | ours: `apply_ms` | ours: keys moved | ours balanced "
             "| rebalance: wall (s) | rebalance: `elapsed_ms` | rebalance: `apply_ms` | rebalance: keys moved "
             "| rebalance balanced | ratio wall | ratio `elapsed_ms` |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for number, run in enumerate(runs, 1):
        ours, theirs = run["ours"], run["redis_cluster_rebalance"]
        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                     % (number, run["first"], fmt(ours["seconds"]), ms(ours.get("elapsed_ms")),
                        ms(ours.get("apply_ms")), ms(ours.get("keys_moved")), balance_state(ours),
                        fmt(theirs["seconds"]), ms(theirs.get("elapsed_ms")), ms(theirs.get("apply_ms")),
                        ms(theirs.get("keys_moved")), balance_state(theirs),
                        fmt(ratio(ours["seconds"], theirs["seconds"])),
                        fmt(ratio(ours.get("elapsed_ms"), theirs.get("elapsed_ms")))))
    timed = [run for run in runs if run["ours"]["seconds"] is not None
             and run["redis_cluster_rebalance"]["seconds"] is not None]
    if timed:
        measured = middle([ratio(run["ours"]["seconds"], run["redis_cluster_rebalance"]["seconds"]) for run in timed])
        measured_elapsed = middle([ratio(run["ours"]["elapsed_ms"], run["redis_cluster_rebalance"]["elapsed_ms"])
                                   for run in timed])
        lines += ["", "Target, ours / `redis_cluster_rebalance` alone, wall time <= %.2f (median of the runs' ratios): "
                  "measured **%.3f** - %s (`elapsed_ms`: %.3f)."
                  % (ADD_TARGET, measured, "**met**" if measured <= ADD_TARGET else "**not met**", measured_elapsed)]
    else:
        lines += ["", "Target, ours / `redis_cluster_rebalance` alone <= %.2f: **not met** - no run timed both."
                  % ADD_TARGET]
    return lines + [""] + breakdown_lines(diag, "balanced")


def balance_state(check: dict) -> str:
    if check["balanced"]:
        return "yes"
    problems = ["tool failed: %s" % check["error"]] if check.get("error") else []
    if not check["converged"]:
        problems.append("no agreement within %.0f s" % CONVERGE_TIMEOUT)
    if check["found"] != check["expected"]:
        problems.append("%d of %d keys" % (check["found"], check["expected"]))
    if check["check"] != "ok":
        problems.append("check: %s" % check["check"])
    problems.append("slots %s" % shares_text(check))
    return "**no** (%s)" % "; ".join(problems).replace("|", "/")


def report(removals: list, removal_diag: dict, adds: list, add_data: Dataset, add_diag: dict, load: tuple,
           total: float) -> str:
    lines = [SECTION, "",
             "Measured by `make bench` (`bench/node_bench.py`) on %s: %d cores, %s. Each run builds two identical "
             "twin clusters on loopback, both alive for the run; one tool works on each, and the tool that goes first "
             "alternates between runs. %d runs per case; each target is judged on the median of the runs' ratios "
             "(the twins of one run share the machine's load, which drifts between runs). Load average (1 min) at the "
             "start and the end: %.1f and %.1f. Whole run: %.0f s."
             % (datetime.date.today().isoformat(), os.cpu_count(), versions(REDIS_SERVER), REPEATS, load[0], load[1],
                total), ""]
    lines += removal_lines(removals, removal_diag)
    lines += [""] + add_lines(adds, add_data, add_diag)
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    removals = [removal_run(number) for number in range(1, REPEATS + 1)]
    removal_diag = removal_breakdown()
    add_data = Dataset("add", [b"key:%d" % index for index in range(KEYS_B)], VALUE)
    adds = [add_run(number, add_data) for number in range(1, REPEATS + 1)]
    add_diag = add_breakdown(add_data)
    total = time.perf_counter() - started
    section = report(removals, removal_diag, adds, add_data, add_diag, (load_before, os.getloadavg()[0]), total)
    print(section)
    if os.environ.get("BENCH_NO_DOCS") != "1":
        write_section(SECTION, section)
        log("wrote %s" % DOCS)
    log("total %.0f s" % total)
    every = [run[name]["removed"] for run in removals for name in ("ours", "redis-cli")]
    every += [run[name]["balanced"] for run in adds for name in ("ours", "redis_cluster_rebalance")]
    return 0 if removal_diag["done"] and add_diag["done"] and all(every) else 1


if __name__ == "__main__":
    run_main(main)
