# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: slot migration - redis_cluster_rebalance / redis_cluster_reshard against redis-cli and raw MIGRATE.

One command, one run; every tool gets a freshly built cluster with the same topology and the same
keys and values (written with pipelined MSETs, keys grouped by slot and owner).

Case A: 3 masters (no replicas), 200 000 keys of 100 bytes, an empty master joins (CLUSTER MEET, then
  every node agrees and reports cluster_state:ok); rebalance with redis_cluster_rebalance (one-task
  ansible-playbook, default options), `redis-cli --cluster rebalance --cluster-use-empty-masters`
  (default pipeline 10) and the same with `--cluster-pipeline 1000`. The floor: as many keys as the
  module moved, same names and sizes, moved between two standalone (non-cluster) redis-server
  instances with variadic MIGRATE, 1000 keys per command, all commands sent in one write. For reference,
  the MIGRATEs alone in a cluster: the slots the module plans, opened and listed beforehand, moved by
  per-slot MIGRATE pipelines from every source at once (a cluster refuses keys of two slots in one MIGRATE).
Case B: 3 masters (redis-cli --cluster create refuses fewer), 1 000 000 keys in slot 0 (one hash tag),
  small values; that slot moves to the second master with redis_cluster_reshard (slot_list) and
  `redis-cli --cluster reshard --cluster-slots 1`, default pipeline and 1000 (slot 0 is the first slot
  of the source, which is the one redis-cli picks; checked before, its new owner checked after).
Cases A and B also run the module's backend once more in this process, on one more identical cluster,
with timers around the functions it calls: where its time goes.
Case C: as case A with 10 KiB values, 2 keys in every slot (hash tags), so that every tool moves as many
  keys (with random names, the slots each tool picks would hold different numbers of keys).

After every run: the sum of DBSIZE over the masters must equal the keys written (a run that lost keys
says so in the table), `redis-cli --cluster check` must pass. The markdown goes to stdout and into
docs/benchmarks.md under "## slot migration"; progress goes to stderr.

Environment: BENCH_KEYS_A, BENCH_KEYS_B, BENCH_KEYS_PER_SLOT_C, BENCH_VALUE_C (smaller runs while trying
it), BENCH_NO_DOCS=1 (print only; leave docs/benchmarks.md alone).
"""

from __future__ import annotations

import binascii
import contextlib
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import hiredis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from playbook_runs import ANSIBLE_PLAYBOOK, COLLECTIONS_PATH, ansible_env  # noqa: E402
from redis_harness import REDIS_CLI, REDIS_SERVER, RedisNodes, form_cluster, wait_converged  # noqa: E402
from bench_docs import DOCS, run_main, versions, write_section  # noqa: E402

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.redisops.cluster.plugins.module_utils import _change, _client, _executor, _moves  # noqa: E402
from ansible_collections.redisops.cluster.plugins.module_utils._module import connection_argument_spec  # noqa: E402
from ansible_collections.redisops.cluster.plugins.modules import (  # noqa: E402
    redis_cluster_rebalance as rebalance_module, redis_cluster_reshard as reshard_module,
)

SECTION = "## slot migration"
KEYS_A = int(os.environ.get("BENCH_KEYS_A", "200000"))
VALUE_A = 100
KEYS_B = int(os.environ.get("BENCH_KEYS_B", "1000000"))
KEYS_PER_SLOT_C = int(os.environ.get("BENCH_KEYS_PER_SLOT_C", "2"))
VALUE_C = int(os.environ.get("BENCH_VALUE_C", "10240"))
SLOTS = 16384
FLOOR_KEYS_PER_MIGRATE = 1000
SEND_CHUNK = 4 << 20  # bytes of commands per write while loading data
TARGETS = (("redis-cli rebalance, default pipeline", 8.0), ("redis-cli rebalance, --cluster-pipeline 1000", 5.0))
FLOOR_TARGET = 0.40
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))  # runs of the module's default options and of the floors
CLI_DEFAULT = "redis-cli rebalance, default pipeline"
CLI_P1000 = "redis-cli rebalance, --cluster-pipeline 1000"


def log(message: str) -> None:
    print("[bench] " + message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data: key names, values, hash slots, and writing them fast


def key_slot(key: bytes) -> int:
    """CRC16 (XMODEM) of the key's hash tag, as Redis Cluster computes it."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return binascii.crc_hqx(key, 0) % SLOTS


def slot_tags() -> list:
    """A hash tag for every slot: tags[slot] hashes to slot."""
    tags, found, index = [None] * SLOTS, 0, 0
    while found < SLOTS:
        tag = b"t%d" % index
        slot = binascii.crc_hqx(tag, 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            found += 1
        index += 1
    return tags


class Dataset:
    """keys[i] with value(i) of `size` bytes; by_slot: slot -> key indexes."""

    def __init__(self, name: str, keys: list, size: int, slots=None):
        self.name = name
        self.keys = keys
        self.size = size
        slots = slots if slots is not None else [key_slot(key) for key in keys]
        self.by_slot = {}
        for index, slot in enumerate(slots):
            self.by_slot.setdefault(slot, []).append(index)

    def __len__(self):
        return len(self.keys)

    def value(self, index: int) -> bytes:
        return (b"v%d:" % index).ljust(self.size, b"x")


def resp(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RawConnection:
    """A plain socket speaking just enough RESP for pipelines whose replies are one line each (+OK, +NOKEY, -ERR)."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=300)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def replies(self, count: int) -> list:
        buffer = self.pending
        while buffer.count(b"\r\n") < count:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed with %d replies outstanding" % count)
            buffer += chunk
        lines = buffer.split(b"\r\n")
        self.pending = b"\r\n".join(lines[count:])
        return lines[:count]

    def close(self) -> None:
        self.sock.close()


def send_all(host: str, port: int, commands) -> None:
    """commands: an iterable of packed commands, each answered +OK; sent in big writes, every reply checked."""
    conn = RawConnection(host, port)
    try:
        buffer, count = [], 0
        size = 0

        def flush():
            conn.send(b"".join(buffer))
            bad = [line for line in conn.replies(count) if line != b"+OK"]
            if bad:
                raise RuntimeError("%s:%d refused a write: %r" % (host, port, bad[0]))

        for command in commands:
            buffer.append(command)
            count += 1
            size += len(command)
            if size >= SEND_CHUNK:
                flush()
                buffer, count, size = [], 0, 0
        if buffer:
            flush()
    finally:
        conn.close()


def mset_commands(dataset: Dataset, slots, per_command: int = 1000):
    """MSETs of the keys in slots, one slot per command (a cluster refuses keys of two slots in one)."""
    for slot in slots:
        indexes = dataset.by_slot.get(slot, ())
        for start in range(0, len(indexes), per_command):
            args = [b"MSET"]
            for index in indexes[start:start + per_command]:
                args += [dataset.keys[index], dataset.value(index)]
            yield resp(args)


def slot_owners(node) -> dict:
    """port -> the slots it serves, from CLUSTER SLOTS."""
    owners = {}
    for first, last, master, *_replicas in node.call("CLUSTER", "SLOTS"):
        owners.setdefault(int(master[1]), []).extend(range(int(first), int(last) + 1))
    return owners


def load(nodes, dataset: Dataset) -> None:
    owners = slot_owners(nodes[0])
    for node in nodes:
        send_all(node.host, node.port, mset_commands(dataset, owners.get(node.port, ())))


def check_loaded(nodes, dataset: Dataset) -> None:
    found = dbsize_total(nodes)
    if found != len(dataset):
        raise RuntimeError("wrote %d keys, the cluster holds %d" % (len(dataset), found))


# ---------------------------------------------------------------------------------------------
# Clusters


def build(masters: int, dataset: Dataset, empty_master: bool, replicas: int = 0) -> RedisNodes:
    """masters masters (with replicas replicas each) formed with redis-cli, the data written; then (empty_master) one
    more master joins, empty."""
    started = time.perf_counter()
    members = masters * (1 + replicas)
    nodes = RedisNodes(members + (1 if empty_master else 0))
    try:
        form_cluster(nodes.nodes[:members], replicas=replicas, timeout=60 * (1 + replicas))
        load(nodes.nodes[:members], dataset)
        if empty_master:
            joining = nodes[members]
            joining.call("CLUSTER", "MEET", nodes[0].host, nodes[0].port, nodes[0].bus_port)
            # Known everywhere, the same view on every node, cluster_state:ok on every node (the new one included).
            wait_converged(nodes.nodes, timeout=60)
        check_loaded(nodes, dataset)
    except BaseException:
        nodes.close()
        raise
    log("  cluster of %d node(s) built, %d keys written (%.1f s)" % (len(nodes), len(dataset), time.perf_counter() - started))
    return nodes


def node_ids(nodes) -> dict:
    return {node.port: node.node_id() for node in nodes}


def census(nodes) -> dict:
    """port -> (keys, slots) of every master, slots as nodes[0] sees them."""
    slots = {}
    for line in nodes[0].cluster_nodes().splitlines():
        fields = line.split()
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        count = 0
        for token in fields[8:]:
            if not token.startswith("["):
                first, _sep, last = token.partition("-")
                count += int(last or first) - int(first) + 1
        slots[port] = count
    return {node.port: (node.call("DBSIZE"), slots.get(node.port, 0)) for node in nodes
            if node.call("ROLE")[0] == b"master"}


def dbsize_total(nodes) -> int:
    return sum(keys for keys, _slots in census(nodes).values())


def moved(before: dict, after: dict) -> tuple:
    """(keys, slots) that arrived somewhere: the sums of the increases."""
    keys = sum(max(0, after[port][0] - before.get(port, (0, 0))[0]) for port in after)
    slots = sum(max(0, after[port][1] - before.get(port, (0, 0))[1]) for port in after)
    return keys, slots


def cluster_check(node) -> str:
    """'ok' when redis-cli --cluster check finds nothing, else its first complaint."""
    out = subprocess.run([REDIS_CLI, "--cluster", "check", node.address], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, check=False, timeout=120).stdout
    if "[OK] All 16384 slots covered." in out and "[ERR]" not in out and "[WARNING]" not in out:
        return "ok"
    bad = [line for line in out.splitlines() if "[ERR]" in line or "[WARNING]" in line]
    return bad[0] if bad else "check failed"


def verify(nodes, expected: int) -> dict:
    try:
        wait_converged(nodes.nodes, timeout=60)
        converged = True
    except RuntimeError:
        converged = False
    after = census(nodes)
    found = sum(keys for keys, _slots in after.values())
    check = cluster_check(nodes[0])
    if not converged and check == "ok":
        check = "nodes did not converge within 60 s"
    return {"after": after, "found": found, "expected": expected, "check": check,
            "ranges": len(nodes[0].call("CLUSTER", "SLOTS"))}


# ---------------------------------------------------------------------------------------------
# The tools


def playbook_run(module: str, args: dict) -> tuple:
    """A one-task playbook, as a user runs it: (the module's result, wall seconds of ansible-playbook)."""
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "play.yml")
        with open(path, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False,
                        "tasks": [{"redisops.cluster." + module: args}]}], handle)
        started = time.perf_counter()
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-v", "-i", "localhost,", "-c", "local", path], env=ansible_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=900)
        wall = time.perf_counter() - started
    # -v prints the task's result as one line of JSON.
    found = re.search(r"^(?:changed|ok): \[localhost\] => (\{.*\})$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not found:
        raise RuntimeError("%s failed (rc %d):\n%s" % (module, proc.returncode, proc.stdout[-4000:]))
    return json.loads(found.group(1)), wall


def playbook(module: str, args: dict) -> tuple:
    """A one-task playbook of a module that applied a plan: (its timings and counts, wall seconds)."""
    result, wall = playbook_run(module, args)
    if result.get("apply_ms") is None:
        raise RuntimeError("%s applied no plan: %s" % (module, result.get("plan")))
    return {name: result.get(name) for name in ("apply_ms", "elapsed_ms", "keys_moved", "slots_moved")}, wall


def redis_cli(args) -> float:
    started = time.perf_counter()
    proc = subprocess.run([REDIS_CLI, "--cluster"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False, timeout=900)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError("redis-cli --cluster %s failed (rc %d):\n%s"
                           % (" ".join(args), proc.returncode, proc.stdout[-4000:]))
    return took


def run_tool(name: str, masters: int, dataset: Dataset, empty_master: bool, action) -> dict:
    """A fresh cluster, action(nodes) -> measurement dict, then the keys counted and the cluster checked."""
    log("%s: %s" % (dataset.name, name))
    with build(masters, dataset, empty_master) as nodes:
        before = census(nodes)
        measured = action(nodes)
        result = verify(nodes, len(dataset))
        keys, slots = moved(before, result["after"])
        result.update(tool=name, keys_moved=keys, slots_moved=slots, **measured)
    rate = result["keys_moved"] / result["seconds"] if result["seconds"] else 0.0
    log("  %d keys, %d slots in %.2f s = %.0f keys/s; %d/%d keys present, check %s"
        % (result["keys_moved"], result["slots_moved"], result["seconds"], rate, result["found"],
           result["expected"], result["check"]))
    return result


def ours_rebalance(**options):
    def action(nodes) -> dict:
        numbers, wall = playbook("redis_cluster_rebalance",
                                 dict(options, login_host=nodes[0].host, login_port=nodes[0].port))
        return {"seconds": numbers["apply_ms"] / 1000.0, "wall": wall, "elapsed": numbers["elapsed_ms"] / 1000.0,
                "reported_keys": numbers["keys_moved"], "reported_slots": numbers["slots_moved"]}
    return action


def cli_rebalance(pipeline=None):
    def action(nodes) -> dict:
        args = ["rebalance", nodes[0].address, "--cluster-use-empty-masters"]
        if pipeline:
            args += ["--cluster-pipeline", str(pipeline)]
        return {"seconds": redis_cli(args)}
    return action


def ours_reshard(slot: int):
    def action(nodes) -> dict:
        target = nodes[1]
        numbers, wall = playbook("redis_cluster_reshard", {"login_host": nodes[0].host, "login_port": nodes[0].port,
                                                           "to": target.address, "slot_list": [str(slot)]})
        return {"seconds": numbers["apply_ms"] / 1000.0, "wall": wall, "elapsed": numbers["elapsed_ms"] / 1000.0,
                "reported_keys": numbers["keys_moved"], "reported_slots": numbers["slots_moved"],
                "slot_owner": owner_port(nodes, slot), "target": target.port}
    return action


def cli_reshard(slot: int, pipeline=None):
    def action(nodes) -> dict:
        ids = node_ids(nodes)
        source, target = nodes[0], nodes[1]
        if owner_port(nodes, slot) != source.port or min(slot_owners(source)[source.port]) != slot:
            raise RuntimeError("slot %d is not the first slot of %s: redis-cli would pick another" % (slot, source.address))
        args = ["reshard", source.address, "--cluster-from", ids[source.port], "--cluster-to", ids[target.port],
                "--cluster-slots", "1", "--cluster-yes"]
        if pipeline:
            args += ["--cluster-pipeline", str(pipeline)]
        took = redis_cli(args)
        return {"seconds": took, "slot_owner": owner_port(nodes, slot), "target": target.port}
    return action


def owner_port(nodes, slot: int):
    for port, slots in slot_owners(nodes[0]).items():
        if slot in slots:
            return port
    return None


# ---------------------------------------------------------------------------------------------
# Where the module's time goes: its own run_moves in this process, on one more identical cluster


class InProcessModule:
    """What run_moves and apply_plan use of an AnsibleModule: params (the modules' defaults), check_mode, warn."""

    def __init__(self, params: dict):
        self.params = params
        self.check_mode = False
        self.warnings = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def default_params(**given) -> dict:
    spec = connection_argument_spec()
    spec.update(_change.change_argument_spec())
    spec.update(_moves.move_argument_spec())
    params = {name: option.get("default") for name, option in spec.items()}
    # redis_cluster_rebalance's own options with their documented defaults; reshard's are given.
    params.update(weights={}, threshold=2.0, use_empty_masters=True, max_slots=0)
    params.update(given)
    return params


def phase_name(commands) -> str:
    """A pipeline named by what it does, from its first command (a move's pipelines each start differently)."""
    first = next(command for command in commands if not isinstance(command, _client.Packed) or command.count)
    if isinstance(first, _client.Packed):
        reader = hiredis.Reader()
        reader.feed(first.data)
        first = reader.gets()
    words = [word.decode() if isinstance(word, bytes) else str(word) for word in first]
    if words[0] == "MIGRATE":
        return "MIGRATE (then GETKEYSINSLOT again for slots with more keys)"
    if words[0] == "MULTI":
        return "hand-over on the target: MULTI, SETSLOT STABLE/NODE, EXEC (then IMPORTING for the next batch)"
    if words[:2] == ["CLUSTER", "SETSLOT"] and words[3] == "NODE":
        return "hand-over on the source: SETSLOT NODE (then MIGRATING and GETKEYSINSLOT for the next batch)"
    if words[:2] == ["CLUSTER", "SETSLOT"] and words[3] == "MIGRATING":
        return "first batch on the source: SETSLOT MIGRATING, GETKEYSINSLOT"
    if words[:2] == ["CLUSTER", "SETSLOT"]:
        return "CLUSTER SETSLOT %s" % words[3]
    return " ".join(words[:2])


def timers(timings: dict) -> tuple:
    """(record(name, seconds), timed(name, function) -> function) adding calls and seconds to timings[name]."""

    def record(name, took):
        calls, total = timings.get(name, (0, 0.0))
        timings[name] = (calls + 1, total + took)

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                record(name, time.perf_counter() - started)
        return wrapper

    return record, timed


@contextlib.contextmanager
def timed_steps(timings: dict, patches):
    """While inside: each (owner, attribute, label) of patches, and the executor's handler of every step action, add
    their calls and seconds to timings."""
    _record, timed = timers(timings)
    saved = [(owner, name, getattr(owner, name)) for owner, name, _label in patches]
    handlers = dict(_executor.HANDLERS)
    for owner, name, label in patches:
        setattr(owner, name, timed(label, getattr(owner, name)))
    for action, handler in handlers.items():
        _executor.HANDLERS[action] = timed("steps " + action, handler)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
        _executor.HANDLERS.update(handlers)


def breakdown(dataset: Dataset, masters: int, empty_master: bool, decide, **given) -> dict:
    """The module's backend (run_moves with the module's decide), its steps timed by wrapping the functions it calls."""
    log("%s: in-process breakdown of the module's time" % dataset.name)
    timings = {}
    record, timed = timers(timings)

    original_pipeline = _client.NodeConnection.pipeline

    def pipeline(self, commands):
        commands = list(commands)
        if not _client.command_count(commands):  # nothing to send: no round trip
            return []
        started = time.perf_counter()
        try:
            return original_pipeline(self, commands)
        finally:
            phase = phase_name(commands)
            record("pipeline: " + phase, time.perf_counter() - started)
            calls, total = timings.get("commands: " + phase, (0, 0.0))
            timings["commands: " + phase] = (calls + _client.command_count(commands), total)

    patches = [(_moves, "observe_cluster", timed("observe the cluster before the moves (discovery)",
                                                 _moves.observe_cluster)),
               (_moves, "count_keys", timed("count keys in every slot (CLUSTER COUNTKEYSINSLOT)", _moves.count_keys)),
               (_change, "observe_nodes", timed("observe the nodes after the moves", _change.observe_nodes)),
               (_executor.Executor, "_wait", timed("wait until every node agrees (WAIT_CONVERGED step)",
                                                   _executor.Executor._wait)),
               (_executor, "move_slots", timed("move slots (move_slots, one call per source -> target pair)",
                                               _executor.move_slots)),
               (_client.NodeConnection, "pipeline", pipeline)]
    with build(masters, dataset, empty_master) as nodes:
        module = InProcessModule(default_params(login_host=nodes[0].host, login_port=nodes[0].port,
                                                **{key: (value(nodes) if callable(value) else value)
                                                   for key, value in given.items()}))
        for node in nodes:
            node.call("CONFIG", "RESETSTAT")
        saved = [(owner, name, getattr(owner, name)) for owner, name, _new in patches]
        for owner, name, new in patches:
            setattr(owner, name, new)
        try:
            started = time.perf_counter()
            result = _moves.run_moves(module, decide)
            total = time.perf_counter() - started
        finally:
            for owner, name, old in saved:
                setattr(owner, name, old)
        server = server_time(nodes)
        check = verify(nodes, len(dataset))
    log("  run_moves %.2f s, apply_ms %d, %d keys; %d/%d keys present, check %s"
        % (total, result["apply_ms"], result["keys_moved"], check["found"], check["expected"], check["check"]))
    return {"total": total, "apply_ms": result["apply_ms"], "keys_moved": result["keys_moved"], "timings": timings,
            "check": check, "server": server}


def server_time(nodes) -> dict:
    """command -> (calls, ms) summed over the nodes, from INFO commandstats (time inside the server)."""
    totals = {}
    for node in nodes:
        with node.client() as conn:
            for name, fields in conn.info("commandstats").items():
                command = name[len("cmdstat_"):]
                calls, usec = totals.get(command, (0, 0))
                totals[command] = (calls + int(fields["calls"]), usec + int(fields["usec"]))
    return {command: (calls, usec / 1000.0) for command, (calls, usec) in totals.items()}


def breakdown_lines(diag: dict) -> list:
    """The paragraph that introduces a breakdown, then its table."""
    timings = diag["timings"]
    lines = ["Where the module's time goes: its own backend (`run_moves` with the module's `decide`, default "
             "options) in the benchmark process, on one more identical cluster, the functions it calls wrapped "
             "with timers (run_moves %.2f s, `apply_ms` %d, %d keys moved, keys present after: %s). A round trip "
             "is one `NodeConnection.pipeline` call: packing the commands, the server's work, reading and "
             "parsing the replies (%s)."
             % (diag["total"], diag["apply_ms"], diag["keys_moved"], present(diag["check"]), reply_parser()), "",
             "| step (in process) | calls | ms |", "| --- | ---: | ---: |",
             "| run_moves, whole (module `elapsed_ms` less Ansible's argument handling) | 1 | %.0f |"
             % (1000 * diag["total"]),
             "| of which `apply_ms` (the moves and the convergence waits) | 1 | %d |" % diag["apply_ms"]]
    for name in ("observe the cluster before the moves (discovery)",
                 "count keys in every slot (CLUSTER COUNTKEYSINSLOT)",
                 "wait until every node agrees (WAIT_CONVERGED step)",
                 "move slots (move_slots, one call per source -> target pair)",
                 "observe the nodes after the moves"):
        if name in timings:
            lines.append("| %s | %d | %.0f |" % (name, timings[name][0], 1000 * timings[name][1]))
    for name in sorted(timings):
        if name.startswith("pipeline: "):
            phase = name[len("pipeline: "):]
            commands = timings.get("commands: " + phase, (0, 0.0))[0]
            lines.append("| round trips, %s (one pipeline each; %d commands in all) | %d | %.0f |"
                         % (phase, commands, timings[name][0], 1000 * timings[name][1]))
    lines += server_rows(diag["server"], ("migrate", "restore-asking", "cluster|getkeysinslot", "cluster|setslot",
                                          "cluster|countkeysinslot"))
    return lines


def server_rows(server: dict, commands) -> list:
    """Table rows of the servers' own time per command (INFO commandstats, summed over nodes), for those run."""
    return ["| inside the servers: `%s` (INFO commandstats, summed over nodes) | %d | %.0f |"
            % (command.replace("|", " "), server[command][0], server[command][1]) for command in commands
            if command in server]


# ---------------------------------------------------------------------------------------------
# The floor: variadic MIGRATE between two standalone servers


def floor(dataset: Dataset, count: int, grouping: str) -> dict:
    """count keys of dataset (same names and sizes) from one standalone server to another; grouping
    'fixed' puts FLOOR_KEYS_PER_MIGRATE keys in every MIGRATE, 'slot' the keys of one hash slot (as a
    cluster must); every command packed beforehand, all sent in one write, then every reply read."""
    indexes = []
    groups = []
    if grouping == "fixed":
        indexes = list(range(min(count, len(dataset))))
        groups = [indexes[start:start + FLOOR_KEYS_PER_MIGRATE]
                  for start in range(0, len(indexes), FLOOR_KEYS_PER_MIGRATE)]
    elif count > 0:
        for slot in sorted(dataset.by_slot):
            if len(indexes) >= count:
                break
            group = dataset.by_slot[slot]
            indexes += group
            groups.append(group)
    if not groups:
        return {"keys_moved": 0, "commands": 0, "seconds": 0.0}
    with RedisNodes(2, cluster=False) as pair:
        source, target = pair[0], pair[1]
        send_all(source.host, source.port,
                 (resp([b"MSET"] + [part for index in indexes[start:start + 1000]
                                    for part in (dataset.keys[index], dataset.value(index))])
                  for start in range(0, len(indexes), 1000)))
        base = [b"MIGRATE", target.host.encode(), b"%d" % target.port, b"", b"0", b"60000", b"KEYS"]
        packed = b"".join(resp(base + [dataset.keys[index] for index in group]) for group in groups)
        conn = RawConnection(source.host, source.port)
        try:
            started = time.perf_counter()
            conn.send(packed)
            replies = conn.replies(len(groups))
            took = time.perf_counter() - started
        finally:
            conn.close()
        bad = [line for line in replies if line != b"+OK"]
        arrived, left = target.call("DBSIZE"), source.call("DBSIZE")
    if bad or arrived != len(indexes) or left != 0:
        raise RuntimeError("floor MIGRATE: %d bad replies (%r), %d keys arrived of %d, %d left"
                           % (len(bad), bad[:1], arrived, len(indexes), left))
    per = len(indexes) / len(groups)
    log("%s: floor (%s, %.1f keys per MIGRATE): %d keys in %.3f s = %.0f keys/s"
        % (dataset.name, grouping, per, len(indexes), took, len(indexes) / took))
    return {"keys_moved": len(indexes), "commands": len(groups), "seconds": took}


def cluster_floor(dataset: Dataset, decide) -> dict:
    """The MIGRATEs alone, in the cluster: on one more identical cluster, the slots the module plans (its backend
    in check mode) are opened and their keys listed beforehand, untimed; then every source sends one pipeline of
    per-slot MIGRATEs at once, each on its own thread. No SETSLOT, listing or waiting is timed: the fastest any
    tool could move these keys with the MIGRATEs a cluster allows, on this machine, with these sources in parallel."""
    with build(3, dataset, True) as nodes:
        module = InProcessModule(default_params(login_host=nodes[0].host, login_port=nodes[0].port))
        module.check_mode = True
        planned = _moves.run_moves(module, decide)
        options = _client.ConnectionOptions()
        ids = node_ids(nodes)
        by_id = {node_id: node for node in nodes for node_id in [ids[node.port]]}
        sends = []
        for step in planned["plan_steps"]:
            if step["action"] != "migrate_slots":
                continue
            source, target = by_id[step["node_id"]], by_id[step["args"][1]]
            slots = [slot for first, last in step["args"][4] for slot in range(first, last + 1)]
            with _client.NodeConnection(target.host, target.port, options) as conn:
                conn.pipeline(("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port]) for slot in slots)
            conn = _client.NodeConnection(source.host, source.port, options)
            conn.pipeline(("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port]) for slot in slots)
            listed = [keys for keys in conn.pipeline(("CLUSTER", "GETKEYSINSLOT", slot, 100000) for slot in slots) if keys]
            conn.close()
            base = [b"MIGRATE", target.host.encode(), b"%d" % target.port, b"", b"0", b"60000", b"KEYS"]
            sends.append((source, b"".join(resp(base + list(keys)) for keys in listed), len(listed),
                          sum(len(keys) for keys in listed)))
        outcome = {}

        def send(source, packed, count, _keys):
            conn = RawConnection(source.host, source.port)
            try:
                conn.send(packed)
                outcome[source.port] = [line for line in conn.replies(count) if line != b"+OK"]
            finally:
                conn.close()

        threads = [threading.Thread(target=send, args=entry) for entry in sends]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.perf_counter() - started
    keys = sum(entry[3] for entry in sends)
    bad = [line for lines in outcome.values() for line in lines]
    if bad or len(outcome) != len(sends):
        raise RuntimeError("cluster floor MIGRATE: %d bad replies (%r)" % (len(bad), bad[:1]))
    log("%s: MIGRATEs alone in the cluster, %d sources at once: %d keys in %.3f s = %.0f keys/s"
        % (dataset.name, len(sends), keys, took, keys / took))
    return {"keys_moved": keys, "commands": sum(entry[2] for entry in sends), "seconds": took, "sources": len(sends)}


# ---------------------------------------------------------------------------------------------
# The cases


def median_run(runs: list) -> dict:
    """The run of median time, with every run's time: one run on a noisy machine can be off by a tenth."""
    chosen = dict(sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2])
    chosen["all_seconds"] = [run["seconds"] for run in runs]
    return chosen


def spread(run: dict) -> str:
    """', median of N runs (times)' for a repeated run."""
    times = run.get("all_seconds", ())
    return ", median of %d runs (%s s)" % (len(times), ", ".join("%.3f" % t for t in times)) if len(times) > 1 else ""


def case_a() -> dict:
    keys = [b"key:%d" % index for index in range(KEYS_A)]
    data = Dataset("case A", keys, VALUE_A)
    ours = median_run([run_tool("redis_cluster_rebalance", 3, data, True, ours_rebalance()) for _run in range(REPEATS)])
    cli = run_tool(CLI_DEFAULT, 3, data, True, cli_rebalance())
    cli1000 = run_tool(CLI_P1000, 3, data, True, cli_rebalance(1000))
    fewest = run_tool("redis_cluster_rebalance, slot_choice fewest_keys", 3, data, True,
                      ours_rebalance(slot_choice="fewest_keys"))
    fixed = median_run([floor(data, ours["keys_moved"], "fixed") for _run in range(REPEATS)])
    by_slot = floor(data, ours["keys_moved"], "slot")
    in_cluster = median_run([cluster_floor(data, rebalance_module.decide) for _run in range(REPEATS)])
    diag = breakdown(data, 3, True, rebalance_module.decide)
    return {"data": data, "runs": [ours, cli, cli1000], "fewest": fewest, "floor": fixed, "floor_slot": by_slot,
            "floor_cluster": in_cluster, "diag": diag}


def case_b(tags) -> dict:
    slot = 0
    tag = tags[slot]
    keys = [b"{%s}:%d" % (tag, index) for index in range(KEYS_B)]
    data = Dataset("case B", keys, 0, slots=[slot] * KEYS_B)
    data.value = lambda index: b"v%d" % index
    # 3 masters: redis-cli --cluster create refuses fewer.
    ours = run_tool("redis_cluster_reshard, slot_list", 3, data, False, ours_reshard(slot))
    cli = run_tool("redis-cli reshard, default pipeline", 3, data, False, cli_reshard(slot))
    cli1000 = run_tool("redis-cli reshard, --cluster-pipeline 1000", 3, data, False, cli_reshard(slot, 1000))
    diag = breakdown(data, 3, False, reshard_module.decide, to=lambda nodes: nodes[1].address,
                     slot_list=[str(slot)], slots=None, **{"from": ["all"]})
    return {"data": data, "runs": [ours, cli, cli1000], "slot": slot, "tag": tag.decode(), "diag": diag}


def case_c(tags) -> dict:
    keys, slots = [], []
    for slot in range(SLOTS):
        for index in range(KEYS_PER_SLOT_C):
            keys.append(b"{%s}:big%d" % (tags[slot], index))
            slots.append(slot)
    data = Dataset("case C", keys, VALUE_C, slots=slots)
    ours = median_run([run_tool("redis_cluster_rebalance", 3, data, True, ours_rebalance()) for _run in range(REPEATS)])
    cli = run_tool(CLI_DEFAULT, 3, data, True, cli_rebalance())
    cli1000 = run_tool(CLI_P1000, 3, data, True, cli_rebalance(1000))
    fixed = median_run([floor(data, ours["keys_moved"], "fixed") for _run in range(REPEATS)])
    by_slot = floor(data, ours["keys_moved"], "slot")
    in_cluster = median_run([cluster_floor(data, rebalance_module.decide) for _run in range(REPEATS)])
    return {"data": data, "runs": [ours, cli, cli1000], "floor": fixed, "floor_slot": by_slot,
            "floor_cluster": in_cluster}


# ---------------------------------------------------------------------------------------------
# The report


def reply_parser() -> str:
    """Which parser redis-py reads replies with: hiredis (C) when installed, else its Python parser."""
    from redis.utils import HIREDIS_AVAILABLE  # pylint: disable=import-outside-toplevel
    return "redis-py with hiredis" if HIREDIS_AVAILABLE else "redis-py's Python parser: hiredis is not installed"


def present(run: dict) -> str:
    if run["found"] == run["expected"] and run["check"] == "ok":
        return "all %d" % run["found"]
    lost = run["expected"] - run["found"]
    text = "%d of %d" % (run["found"], run["expected"])
    if lost > 0:
        text += " - **%d LOST**" % lost
    elif lost < 0:
        text += " - **%d extra**" % -lost
    if run["check"] != "ok":
        text += "; check: %s" % run["check"].replace("|", "/")
    return text


def rate(keys: int, seconds: float) -> float:
    return keys / seconds if seconds else 0.0


def ratio(ours: float, other: float) -> float:
    return ours / other if other else 0.0


def mb(keys: int, size: int) -> float:
    return keys * size / 1e6


def fmt_rate(value: float) -> str:
    return "{:,.0f}".format(value)


def met(ratio: float, target: float) -> str:
    return "**met**" if ratio >= target else "**not met**"


def ours_note(run: dict) -> str:
    notes = []
    if run.get("reported_keys") is not None and run["reported_keys"] != run["keys_moved"]:
        notes.append("module reported %d keys" % run["reported_keys"])
    if run.get("reported_slots") is not None and run["reported_slots"] != run["slots_moved"]:
        notes.append("module reported %d slots" % run["reported_slots"])
    return " (%s)" % "; ".join(notes) if notes else ""


def rebalance_table(case: dict, unit: str) -> tuple:
    """Rows for case A (keys/s) or case C (MB/s); also the rates by tool."""
    data, runs = case["data"], case["runs"]
    size = data.size

    def speed(keys, seconds):
        return fmt_rate(rate(keys, seconds)) if unit == "keys" else "%.1f" % rate(mb(keys, size), seconds)

    head = "keys/s" if unit == "keys" else "MB/s (values)"
    lines = ["| tool | keys moved | slots moved | time (s) | %s | keys present after | slot ranges after |" % head,
             "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]

    def module_row(label, run):
        return ("| redis_cluster_rebalance, %s: module `apply_ms`%s%s | %d | %d | %.2f | %s | %s | %d |"
                % (label, spread(run), ours_note(run), run["keys_moved"], run["slots_moved"], run["seconds"],
                   speed(run["keys_moved"], run["seconds"]), present(run), run["ranges"]))

    ours = runs[0]
    lines.append(module_row("default options", ours))
    lines.append("| redis_cluster_rebalance: module `elapsed_ms` (observe, count keys, plan, apply, observe) | %d | %d "
                 "| %.2f | %s | (same run) | |"
                 % (ours["keys_moved"], ours["slots_moved"], ours["elapsed"], speed(ours["keys_moved"], ours["elapsed"])))
    lines.append("| redis_cluster_rebalance: ansible-playbook wall time (one task, ansible start-up included) "
                 "| %d | %d | %.2f | %s | (same run) | |"
                 % (ours["keys_moved"], ours["slots_moved"], ours["wall"], speed(ours["keys_moved"], ours["wall"])))
    if case.get("fewest"):
        lines.append(module_row("`slot_choice: fewest_keys`", case["fewest"]))
    for run, label in ((runs[1], "`redis-cli --cluster rebalance --cluster-use-empty-masters` (pipeline 10)"),
                       (runs[2], "`redis-cli --cluster rebalance --cluster-use-empty-masters --cluster-pipeline 1000`")):
        lines.append("| %s, wall time | %d | %d | %.2f | %s | %s | %d |"
                     % (label, run["keys_moved"], run["slots_moved"], run["seconds"],
                        speed(run["keys_moved"], run["seconds"]), present(run), run["ranges"]))
    per_slot = case["floor_slot"]["keys_moved"] / max(1, case["floor_slot"]["commands"])
    for fl, label in ((case["floor"], "floor: raw MIGRATE between 2 standalone servers, %d keys per MIGRATE, "
                       "pipelined" % FLOOR_KEYS_PER_MIGRATE),
                      (case["floor_slot"], "for reference: the same raw MIGRATE with the keys grouped by hash slot "
                       "(%.1f keys per MIGRATE, as in a cluster), pipelined" % per_slot)):
        shown = speed(fl["keys_moved"], fl["seconds"]) if fl["seconds"] else "-"
        lines.append("| %s%s | %d | - | %.3f | %s | - | - |" % (label, spread(fl), fl["keys_moved"], fl["seconds"], shown))
    alone = case["floor_cluster"]
    lines.append("| for reference: the MIGRATEs alone, in an identical cluster: the module's slots, opened and listed "
                 "beforehand (untimed), one pipeline of per-slot MIGRATEs from each of the %d sources at once%s | %d | - "
                 "| %.3f | %s | - | - |" % (alone["sources"], spread(alone), alone["keys_moved"], alone["seconds"],
                                            speed(alone["keys_moved"], alone["seconds"])))
    rates = {"ours": rate(ours["keys_moved"], ours["seconds"]),
             "ours_wall": rate(ours["keys_moved"], ours["wall"]),
             CLI_DEFAULT: rate(runs[1]["keys_moved"], runs[1]["seconds"]),
             CLI_P1000: rate(runs[2]["keys_moved"], runs[2]["seconds"]),
             "floor": rate(case["floor"]["keys_moved"], case["floor"]["seconds"]),
             "floor_slot": rate(case["floor_slot"]["keys_moved"], case["floor_slot"]["seconds"]),
             "floor_cluster": rate(alone["keys_moved"], alone["seconds"])}
    return lines, rates


def report(a: dict, b: dict, c: dict, load: tuple, total: float) -> str:
    lines = [SECTION, ""]
    lines.append(
        "Measured by `make bench` (`bench/migrate_bench.py`) on %s: %d cores, %s. One command; the module with "
        "default options in cases A and C, the floor and the MIGRATEs alone in the cluster run %d times each and "
        "the run of median time counts, every other tool runs once (these machines are noisy: one run of a "
        "fraction of a second can be off by a tenth). Every run gets a freshly built cluster on loopback with the same topology and the same keys "
        "and values; masters only (no replicas). Our modules run through a one-task `ansible-playbook` with "
        "default options; their rate uses the module's own `apply_ms` (the moves plus the convergence wait "
        "after them, and one before them when the cluster was not settled) and the keys that arrived; redis-cli's uses its wall time. Keys moved and "
        "slots moved are counted on the nodes (DBSIZE and slot counts before and after); after every run the "
        "sum of DBSIZE over the masters is compared with the keys written and `redis-cli --cluster check` "
        "must pass (column \"keys present after\"). Load average (1 min) at the start and the end: %.1f and "
        "%.1f; other work on the machine shows up as noise. Whole run: %.0f s."
        % (datetime.date.today().isoformat(), os.cpu_count(), versions(REDIS_SERVER), REPEATS, load[0], load[1], total))
    lines += ["", "### A: rebalance onto an empty master, %d keys of %d bytes" % (len(a["data"]), a["data"].size), "",
              "3 masters hold %d keys (`key:0` ... `key:%d`, values of %d bytes); a 4th, empty master joins "
              "(CLUSTER MEET, then every node agrees and reports cluster_state:ok); then the rebalance. With its "
              "default `slot_choice: contiguous`, the module has each source give one run of its slots, the run "
              "with the fewest keys; with `slot_choice: fewest_keys`, the emptiest slots wherever they lie; "
              "redis-cli gives each source's lowest-numbered slots. The keys moved differ for the same number of "
              "slots, so each rate divides the tool's own keys by its own time. \"Slot ranges after\" counts the "
              "entries of `CLUSTER SLOTS` after the run. The floor moves as many keys as the module moved by "
              "default (the same names and sizes) between two standalone redis-server instances."
              % (len(a["data"]), len(a["data"]) - 1, a["data"].size), ""]
    table, rates = rebalance_table(a, "keys")
    lines += table
    lines += ["", "Targets (module `apply_ms` rate):", ""]
    for name, target in TARGETS:
        measured = ratio(rates["ours"], rates[name])
        lines.append("- >= %.0fx %s: measured **%.2fx** - %s (ansible-playbook wall-time rate: %.2fx)"
                     % (target, name, measured, met(measured, target), ratio(rates["ours_wall"], rates[name])))
    ours_run, cli_runs, fewest = a["runs"][0], a["runs"][1:], a["fewest"]
    lines.append("- not a target, the same job (the cluster balanced) in time: the module took %.2f s, redis-cli %s; "
                 "%s less time. With `slot_choice: fewest_keys` the module moved %d keys instead of %d, in %.2f s, "
                 "and left %d slot ranges instead of %d."
                 % (ours_run["seconds"], " and ".join("%.2f s" % run["seconds"] for run in cli_runs),
                    " and ".join("%.1fx" % ratio(run["seconds"], ours_run["seconds"]) for run in cli_runs),
                    fewest["keys_moved"], ours_run["keys_moved"], fewest["seconds"], fewest["ranges"],
                    ours_run["ranges"]))
    measured = ratio(rates["ours"], rates["floor"])
    lines.append("- >= %.0f%% of the floor (%d keys per MIGRATE): measured **%.1f%%** - %s (ansible-playbook wall-time "
                 "rate: %.1f%%; against the slot-grouped MIGRATE: %.1f%%; the MIGRATEs alone in the cluster reach "
                 "%.1f%% of the floor, and the module %.1f%% of them)"
                 % (100 * FLOOR_TARGET, FLOOR_KEYS_PER_MIGRATE, 100 * measured, met(measured, FLOOR_TARGET),
                    100 * ratio(rates["ours_wall"], rates["floor"]), 100 * ratio(rates["ours"], rates["floor_slot"]),
                    100 * ratio(rates["floor_cluster"], rates["floor"]), 100 * ratio(rates["ours"], rates["floor_cluster"])))
    lines.append("- how to read the floor ratio: a cluster needs one MIGRATE per slot, and its round trip costs about "
                 "as much as moving dozens of keys, so keys/s grows with the keys per slot moved: %.1f by default, "
                 "%.1f with `slot_choice: fewest_keys` (%.1f%% of the floor)."
                 % (ours_run["keys_moved"] / max(1, ours_run["slots_moved"]),
                    fewest["keys_moved"] / max(1, fewest["slots_moved"]),
                    100 * ratio(rate(fewest["keys_moved"], fewest["seconds"]), rates["floor"])))
    lines += [""] + breakdown_lines(a["diag"])

    data = b["data"]
    lines += ["", "### B: one hot slot, %d keys" % len(data), "",
              "3 masters (`redis-cli --cluster create` refuses fewer); %d keys `{%s}:N` (values `vN`, a few bytes) all in slot %d, the first slot of the "
              "first master, which is the slot `redis-cli --cluster reshard --cluster-from <first> --cluster-to "
              "<second> --cluster-slots 1 --cluster-yes` picks (checked before, and the slot's owner checked "
              "after). Ours: redis_cluster_reshard with `slot_list: [\"%d\"]`, `to: <second>`, default options."
              % (len(data), b["tag"], b["slot"], b["slot"]), "",
              "| tool | keys moved | time (s) | keys/s | slot %d on the target after | keys present after |" % b["slot"],
              "| --- | ---: | ---: | ---: | --- | --- |"]
    ours = b["runs"][0]
    rows = [("redis_cluster_reshard, default options: module `apply_ms`%s" % ours_note(ours), ours, ours["seconds"]),
            ("redis_cluster_reshard: ansible-playbook wall time", ours, ours["wall"]),
            ("`redis-cli --cluster reshard ... --cluster-slots 1` (pipeline 10), wall time", b["runs"][1],
             b["runs"][1]["seconds"]),
            ("`redis-cli --cluster reshard ... --cluster-slots 1 --cluster-pipeline 1000`, wall time", b["runs"][2],
             b["runs"][2]["seconds"])]
    for label, run, seconds in rows:
        lines.append("| %s | %d | %.2f | %s | %s | %s |"
                     % (label, run["keys_moved"], seconds, fmt_rate(rate(run["keys_moved"], seconds)),
                        "yes" if run["slot_owner"] == run["target"] else "**no**", present(run)))
    ours_rate = rate(ours["keys_moved"], ours["seconds"])
    lines += ["", "Ratios (module `apply_ms` rate): %.2fx redis-cli default, %.2fx redis-cli with --cluster-pipeline "
              "1000." % (ratio(ours_rate, rate(b["runs"][1]["keys_moved"], b["runs"][1]["seconds"])),
                         ratio(ours_rate, rate(b["runs"][2]["keys_moved"], b["runs"][2]["seconds"])))]
    lines += [""] + breakdown_lines(b["diag"])

    data = c["data"]
    lines += ["", "### C: rebalance onto an empty master, %d keys of %d KiB" % (len(data), data.size // 1024), "",
              "As A, with %d keys in every slot (hash tags; %.0f MB of values in all), so every tool moves the same "
              "number of keys: with random names most slots would hold 0-2 keys, and the slots each tool picks "
              "would hold different numbers of them. MB = 10^6 bytes of values moved (keys and encoding not "
              "counted)." % (KEYS_PER_SLOT_C, mb(len(data), data.size)), ""]
    table, rates = rebalance_table(c, "mb")
    lines += table
    lines += ["", "Ratios (module `apply_ms` rate): %.2fx redis-cli default, %.2fx redis-cli with --cluster-pipeline "
              "1000, %.1f%% of the floor (%d keys per MIGRATE), %.1f%% of the slot-grouped MIGRATE, %.1f%% of the "
              "MIGRATEs alone in the cluster."
              % (ratio(rates["ours"], rates[CLI_DEFAULT]), ratio(rates["ours"], rates[CLI_P1000]),
                 100 * ratio(rates["ours"], rates["floor"]), FLOOR_KEYS_PER_MIGRATE,
                 100 * ratio(rates["ours"], rates["floor_slot"]), 100 * ratio(rates["ours"], rates["floor_cluster"]))]
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    tags = slot_tags()
    a = case_a()
    b = case_b(tags)
    c = case_c(tags)
    total = time.perf_counter() - started
    section = report(a, b, c, (load_before, os.getloadavg()[0]), total)
    print(section)
    if os.environ.get("BENCH_NO_DOCS") != "1":
        write_section(SECTION, section)
        log("wrote %s" % os.path.relpath(DOCS, ROOT))
    log("total %.0f s" % total)
    return 0


if __name__ == "__main__":
    run_main(main)
