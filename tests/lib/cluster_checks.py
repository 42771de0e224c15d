# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the integration tests look at and break on a live cluster, with raw commands (never the collection's code)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time

import redis
from redis.crc import key_slot
from playbook_runs import ROOT
from redis_harness import REDIS_CLI

# The login name of the minimal ACL user that docs/playbooks.md lists.
ACL_USER = "redisops"
# Commands that change cluster configuration: check mode must send none of them.
CLUSTER_WRITES = ("addslots", "addslotsrange", "delslots", "delslotsrange", "meet", "replicate", "setslot",
                  "set-config-epoch", "bumpepoch", "forget", "reset", "failover", "flushslots")


def minimal_acl(password: str) -> str:
    """The ACL user as docs/playbooks.md lists it, with the password filled in."""
    with open(os.path.join(ROOT, "docs", "playbooks.md")) as handle:
        rule = re.search(r"(?m)^user %s on >PASSWORD .*$" % ACL_USER, handle.read()).group(0)
    return rule.replace(">PASSWORD ", ">%s " % password)


def facts_of(result: dict) -> dict:
    assert not result.get("failed"), result.get("msg")
    return result["ansible_facts"]["redis_cluster"]


def findings(facts: dict, kind: str) -> list:
    return [finding for finding in facts["findings"] if finding["kind"] == kind]


def seed(nodes, index: int = 0) -> dict:
    return {"login_host": "127.0.0.1", "login_port": nodes[index].port}


def node_ids(nodes) -> dict:
    return {node.port: node.node_id() for node in nodes}


def cluster_nodes_fields(node) -> list:
    return [line.split() for line in node.cluster_nodes().splitlines()]


def own_ranges(fields) -> list:
    """Slot ranges of one CLUSTER NODES line (open-slot markers left out)."""
    ranges = []
    for token in fields[8:]:
        if not token.startswith("["):
            first, _sep, last = token.partition("-")
            ranges.append((int(first), int(last or first)))
    return ranges


def owner_id(node, slot: int):
    """The owner of slot in node's own view (None when unassigned)."""
    for fields in cluster_nodes_fields(node):
        if any(first <= slot <= last for first, last in own_ranges(fields)):
            return fields[0]
    return None


def slot_owner(nodes, slot: int):
    """The harness node that serves slot, as nodes[0] sees it."""
    wanted = owner_id(nodes[0], slot)
    for node in nodes:
        if node.node_id() == wanted:
            return node
    raise AssertionError("slot %d is not served" % slot)


def cluster_ok(node) -> bool:
    return b"cluster_state:ok" in node.call("CLUSTER", "INFO")


def masters(nodes) -> list:
    return [node for node in nodes if node.process.poll() is None and node.call("ROLE")[0] == b"master"]


def replica_of(nodes, master):
    """The first node that replicates master."""
    return next(node for node in nodes if node.call("ROLE")[0] == b"slave" and node.call("ROLE")[2] == master.port)


def redis_cli_check(node) -> str:
    tls = node.tls.cli_args() if node.tls else []
    env = dict(os.environ, REDISCLI_AUTH=node.password) if node.password else None
    return subprocess.run([REDIS_CLI] + tls + ["--cluster", "check", node.address], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False, env=env).stdout


def assert_healthy(node) -> None:
    """redis-cli --cluster check finds nothing to complain about."""
    report = redis_cli_check(node)
    assert "[OK] All nodes agree about slots configuration." in report, report
    assert "[OK] All 16384 slots covered." in report, report
    assert "[ERR]" not in report and "[WARNING]" not in report, report


def cluster_client(nodes, **kwargs) -> redis.RedisCluster:
    """A redis-py cluster client seeded with the first node (its address, password and TLS files); kwargs go to
    redis.RedisCluster (timeouts, for one)."""
    tls = nodes[0].tls.client_kwargs() if nodes[0].tls else {}
    return redis.RedisCluster(host=nodes[0].host, port=nodes[0].port, password=nodes[0].password, **tls, **kwargs)


def write_keys(nodes, count: int, prefix: str = "key", size: int = 0) -> dict:
    """count keys through a cluster client (values padded to size bytes); {key: value} written."""
    client = cluster_client(nodes)
    try:
        written = {("%s:%d" % (prefix, index)).encode(): ("value-%d" % index).encode().ljust(size, b".")
                   for index in range(count)}
        pipe = client.pipeline()
        for key, value in written.items():
            pipe.set(key, value)
        pipe.execute()
        return written
    finally:
        client.close()


def all_keys(nodes, read=lambda conn, key: conn.get(key)) -> dict:
    """Every key -> read(connection, key) (its value by default) on a reachable master, read on the node that
    holds it (a healthy cluster: a key in a slot its node does not serve answers MOVED)."""
    values = {}
    for node in masters(nodes):
        with node.client() as conn:
            for key in conn.scan_iter(count=1000):
                values[key] = read(conn, key)
    return values


def tags_in(first: int, last: int, count: int) -> dict:
    """slot -> a hash tag of that slot, for count distinct slots in first..last."""
    found, index = {}, 0
    while len(found) < count:
        slot = key_slot(b"t%d" % index)
        if first <= slot <= last:
            found.setdefault(slot, b"t%d" % index)
        index += 1
    return found


def slot_runs(slots) -> list:
    """Slots as sorted first-last ranges, as the modules take them."""
    runs = []
    for slot in sorted(slots):
        if runs and runs[-1][1] == slot - 1:
            runs[-1][1] = slot
        else:
            runs.append([slot, slot])
    return ["%d-%d" % (first, last) for first, last in runs]


def open_markers(node) -> list:
    """The [slot->-node] and [slot-<-node] markers of node's own line in its CLUSTER NODES."""
    mine = next(line for line in node.cluster_nodes().splitlines() if "myself" in line)
    return [token for token in mine.split()[8:] if token.startswith("[")]


def raw(node, *commands) -> list:
    """Send commands on one connection (ASKING must share the connection with the command it covers)."""
    conn = node.connection()
    try:
        replies = []
        for command in commands:
            conn.send_command(*command)
            replies.append(conn.read_response())
        return replies
    finally:
        conn.disconnect()


def write_into_foreign_slot(node, key: str, value: str = "stray") -> None:
    """Put a key into a slot the node does not serve, as a botched migration leaves one."""
    slot = key_slot(key.encode())
    raw(node, ("CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id(node, slot)), ("ASKING",), ("SET", key, value),
        ("CLUSTER", "SETSLOT", slot, "STABLE"))


def wait_for(condition, timeout: float = 30.0, message: str = "condition", interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + message
        time.sleep(interval)


def wait_replicated(master, at_least: int = 0) -> None:
    """Until every replica of master, and at least at_least of them, has acknowledged its whole replication stream.
    (WAIT proves nothing here: it counts the replicas that have the writes of the connection it is sent on.)"""
    client = master.client()

    def caught_up() -> bool:
        info = client.info("replication")
        replicas = [value for key, value in info.items() if key.startswith("slave") and isinstance(value, dict)]
        return len(replicas) >= at_least and all(replica["offset"] == info["master_repl_offset"]
                                                 for replica in replicas)
    try:
        wait_for(caught_up, message="the replicas of %s to catch up" % master.address)
    finally:
        client.close()


def command_counts(node) -> dict:
    """INFO commandstats as {command: calls}."""
    stats = node.client().info("commandstats")
    return {name[len("cmdstat_"):]: fields["calls"] for name, fields in stats.items()}


def cluster_writes(nodes) -> list:
    """Cluster-changing commands, key writes and CONFIG SET any node received since CONFIG RESETSTAT."""
    seen = []
    for node in nodes:
        for command, calls in command_counts(node).items():
            if command.startswith("cluster|") and command.split("|", 1)[1] in CLUSTER_WRITES:
                seen.append("%s %s x%d" % (node.address, command, calls))
            if command in ("migrate", "restore", "restore-asking", "del", "set", "config|set"):
                seen.append("%s %s x%d" % (node.address, command, calls))
    return seen


def node_view(node):
    """A node's CLUSTER NODES, each line split and sorted, without the ping-sent and pong-recv times (ids, addresses,
    flags, masters, epochs, link states and slots stay); the error text for a node that is not in cluster mode."""
    try:
        text = node.cluster_nodes()
    except redis.RedisError as error:
        return str(error)
    return sorted(fields[:4] + fields[6:] for fields in (line.split() for line in text.splitlines()))


def node_keys(node) -> tuple:
    """(key count, DEBUG DIGEST) of the node's whole data set: it changes with any key, value or type, and needs no
    slot served (the node must run with enable-debug-command local or yes)."""
    with node.client() as conn:
        return conn.dbsize(), conn.execute_command("DEBUG", "DIGEST")


def replication_settled(nodes) -> None:
    """Until every replica of a master among nodes has all its master wrote: a replica still catching up changes
    its key count by itself."""
    for master in masters(nodes):
        wait_replicated(master)


def observed(nodes) -> dict:
    """Every node's view and keys, once replication has settled: what a refused or check-mode run must leave as it
    found it."""
    replication_settled(nodes)
    return {node.address: (node_view(node), node_keys(node)) for node in nodes}


def commands_received(node) -> dict:
    """INFO commandstats as {command: calls}, counting calls the server rejected or that failed too (such a command
    still reached the node)."""
    stats = node.client().info("commandstats")
    return {name[len("cmdstat_"):]: fields.get("calls", 0) + fields.get("rejected_calls", 0) + fields.get("failed_calls", 0)
            for name, fields in stats.items()}


# Read-only commands that Redis flags admin: a run that only observes may send these.
READ_ONLY_ADMIN = ("config|get", "config|resetstat", "client|list", "client|info", "slowlog|get", "slowlog|len",
                   "latency|latest", "acl|whoami", "acl|getuser", "acl|list", "acl|cat", "memory|stats")
# What replicas send their masters on their own every second (REPLCONF ACK); the collection sends none of it.
REPLICATION_TRAFFIC = ("replconf",)
# Cluster subcommands that only read (Redis flags none of them write or admin; listed so that any cluster
# subcommand outside them fails a check-mode test whatever its flags).
CLUSTER_READS = ("nodes", "info", "myid", "myshardid", "slots", "shards", "countkeysinslot", "getkeysinslot",
                 "keyslot", "links", "replicas", "slaves", "count-failure-reports", "help")
_FLAGS = {}


def command_flags(node, command: str) -> set:
    """COMMAND INFO's flags of a commandstats name (``cluster|setslot`` form for subcommands)."""
    if command not in _FLAGS:
        entry = raw(node, ("COMMAND", "INFO", command))[0][0]
        _FLAGS[command] = {flag.decode() for flag in entry[2]} if entry else {"unknown"}
    return _FLAGS[command]


def changing_commands(nodes) -> list:
    """Commands any node received since CONFIG RESETSTAT that write keys or may change the server or the cluster:
    those Redis flags write, admin or may_replicate (or does not know), bar READ_ONLY_ADMIN and REPLICATION_TRAFFIC,
    and every CLUSTER subcommand outside CLUSTER_READS; as "address command xN"."""
    seen = []
    for node in nodes:
        for command, calls in sorted(commands_received(node).items()):
            container, _sep, sub = command.partition("|")
            if container == "cluster":
                changing = sub not in CLUSTER_READS
            else:
                changing = command not in READ_ONLY_ADMIN + REPLICATION_TRAFFIC and bool(
                    command_flags(node, command) & {"write", "admin", "may_replicate", "unknown"})
            if changing and calls:
                seen.append("%s %s x%d" % (node.address, command, calls))
    return seen


def reset_stats(nodes) -> None:
    for node in nodes:
        node.call("CONFIG", "RESETSTAT")


class Writer(threading.Thread):
    """An unpatched redis-py cluster client writing and reading back keys until stopped; records acknowledged writes
    and errors (anything the client raised, whatever its class: it reaches the application), each acknowledgement
    with its time.monotonic(); client_kwargs go to redis.RedisCluster. interval: seconds between writes (0: as fast
    as it can)."""

    name_shown = "redis-py %s" % redis.__version__

    def __init__(self, nodes, prefix: str = "online", interval: float = 0.0, **client_kwargs):
        super().__init__(daemon=True)
        self.client = cluster_client(nodes, **client_kwargs)
        self.prefix = prefix
        self.interval = interval
        self.acknowledged = {}
        self.acknowledged_at = {}
        self.errors = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        index = 0
        while not self._stop_event.is_set():
            key, value = "%s:%d" % (self.prefix, index), "v%d" % index
            try:
                self.client.set(key, value)
                self.acknowledged[key.encode()] = value.encode()
                self.acknowledged_at[key.encode()] = time.monotonic()
                if self.client.get(key) != value.encode():
                    self.errors.append("read back mismatch for %s" % key)
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append("%s: %r" % (key, exc))
            index += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        self.client.close()


CLIENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clients")
NODE_WRITER_SECONDS = 600  # the node writer stops by itself after this long, whatever happens to the test


class ProcessWriter:
    """A writer in a process of its own that prints "ready" once at work and, when its standard input closes, one
    JSON line of its record; take() reads that record into the attributes of a Writer."""

    def __init__(self, args, password: str | None, name_shown: str):
        # The password goes through the environment, not the command line.
        env = dict(os.environ, REDIS_PASSWORD=password) if password else None
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.acknowledged = {}
        self.errors = []
        self.name_shown = name_shown

    def start(self) -> None:
        """Back once the writer says it is ready."""
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise AssertionError("%s did not start: %r" % (self.name_shown, line))

    def stop(self) -> None:
        try:
            # communicate closes the writer's standard input: its signal to stop.
            out, _err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        report = json.loads(out.strip().splitlines()[-1])
        self.errors = report["errors"]
        self.take(report)

    def take(self, report: dict) -> None:
        raise NotImplementedError


class NodeWriter(ProcessWriter):
    """ioredis (tests/clients, installed by make deps) writing and reading back keys in a node process until
    stopped (its standard input closed); the same record as Writer."""

    def __init__(self, nodes, prefix: str = "ioredis", interval: float = 0.0):
        self.prefix = prefix
        super().__init__(["node", os.path.join(CLIENTS_DIR, "writer.js"), nodes[0].host, str(nodes[0].port), prefix,
                          str(NODE_WRITER_SECONDS), str(int(interval * 1000))], nodes[0].password, "ioredis")

    def take(self, report: dict) -> None:
        self.name_shown = report["client"]
        self.acknowledged = {key.encode(): ("v%s" % key.rsplit(":", 1)[1]).encode() for key in report["acknowledged"]}


@contextlib.contextmanager
def clients_writing(nodes):
    """An unpatched redis-py client and an ioredis client writing while the block runs; yields both (their records
    are complete once the block is left)."""
    writers = [Writer(nodes), NodeWriter(nodes)]
    started = []
    try:
        for writer in writers:
            writer.start()
            started.append(writer)
        yield writers
    finally:
        for writer in started:
            writer.stop()


def client_keys(stored: dict) -> dict:
    """stored without the keys the online clients wrote."""
    return {key: value for key, value in stored.items() if not key.startswith((b"online:", b"ioredis:"))}


def assert_clients_kept_working(writers, stored: dict) -> None:
    """No client raised anything, and every write a client saw acknowledged is there with its value."""
    for writer in writers:
        assert writer.errors == [], "%s: %d error(s): %s" % (writer.name_shown, len(writer.errors), writer.errors[:5])
        assert writer.acknowledged, "%s wrote nothing" % writer.name_shown
        missing = [key for key, value in writer.acknowledged.items() if stored.get(key) != value]
        assert missing == [], "%s: %d acknowledged write(s) missing, e.g. %s" % (writer.name_shown, len(missing),
                                                                                 missing[:5])
