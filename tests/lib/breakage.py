# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seeded broken cluster states on real redis-server nodes, the checks a repair must pass, and both repair tools.

A seed fixes everything about a state before any node is touched: the layout (3-5 masters, a replica for
some of them, hash-tagged slots holding 10-60 keys each plus plain keys) and the breakage, a list of raw
commands addressed by node index (``n0`` .. ``n9``; masters first, in slot order). The same seed therefore
replays the same commands on a twin cluster; only their replies, which depend on gossip timing, may differ,
and the applied list records them so twins can be compared.

Redis itself deletes the keys of a slot on a node that loses the slot to a higher config epoch, so the
state counts only the keys that survived the breaking: after gossip settles, every live master is read.
Values are compared by ``DEBUG DIGEST-VALUE``, which answers on a node whatever slot it serves and whatever
its cluster_state, and does not depend on how a value happens to be encoded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import random
import re
import subprocess
import time

import redis
from playbook_runs import run_tasks
from cluster_checks import redis_cli_check
from redis.crc import key_slot
from redis_harness import REDIS_CLI, RedisNodes

SLOTS = 16384
# DEBUG DIGEST-VALUE reads keys on nodes that would redirect or refuse every keyed command.
NODE_ARGS = ("--enable-debug-command", "local")
SETTLE_STABLE_S = 1.0
SETTLE_TIMEOUT_S = 15.0
FIX_WAIT_TIMEOUT_S = 20.0
REDIS_CLI_TIMEOUT_S = 120.0
CHECK_WAIT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Ref:
    """A node named by index in a command, rendered as its id (or port) on the cluster it is applied to."""

    index: int
    field: str = "id"

    def __str__(self) -> str:
        return "n%d" % self.index if self.field == "id" else "n%d.%s" % (self.index, self.field)


@dataclasses.dataclass(frozen=True)
class Op:
    """One raw command sent to node ``node``; ``KILL`` stops the node's process instead."""

    node: int
    args: tuple
    summary: str = ""

    def describe(self) -> str:
        return "n%d %s" % (self.node, self.summary or " ".join(str(arg) for arg in self.args))


@dataclasses.dataclass(frozen=True)
class Layout:
    """The cluster a seed builds: masters 0..masters-1 own consecutive slot ranges; replicas follow them."""

    masters: int
    replica_of: tuple  # master index of each replica, replicas numbered from `masters` on
    keys: tuple  # (key, kind, value) written before the breakage

    @property
    def size(self) -> int:
        return self.masters + len(self.replica_of)

    def owner(self, slot: int) -> int:
        return slot * self.masters // SLOTS

    def first_slot(self, master: int) -> int:
        return -(-master * SLOTS // self.masters)

    def keys_by_slot(self) -> dict:
        by_slot = {}
        for key, _kind, _value in self.keys:
            by_slot.setdefault(key_slot(key), []).append(key)
        return by_slot


@dataclasses.dataclass
class BrokenState:
    """A cluster after its breakage: the nodes by index, what was applied, and the keys that survived it."""

    seed: int
    layout: Layout
    nodes: list
    breakage: list  # "n2 CLUSTER SETSLOT 866 IMPORTING n0 -> OK", one line per command
    snapshot: dict  # key -> DEBUG DIGEST-VALUE, over every live master
    notes: list  # harness observations (gossip that did not settle, keys that Redis dropped)

    @property
    def live_nodes(self) -> list:
        return [node for node in self.nodes if node.process.poll() is None]


@dataclasses.dataclass
class Verdict:
    repaired: bool
    keys_lost: int
    reasons: list

    def summary(self) -> str:
        return "repaired" if self.repaired else "; ".join(self.reasons)


def make_layout(rng: random.Random, seed: int) -> Layout:
    masters = rng.randint(3, 5)
    replica_of = tuple(master for master in range(masters) if rng.random() < 0.5)
    keys = []
    for tag in range(rng.randint(20, 40)):
        keys += [_key_of(rng, "{s%dt%d}:%d" % (seed, tag, index)) for index in range(rng.randint(10, 60))]
    keys += [_key_of(rng, "k%d:%d" % (seed, index)) for index in range(rng.randint(100, 400))]
    return Layout(masters=masters, replica_of=replica_of, keys=tuple(keys))


def _key_of(rng: random.Random, name: str) -> tuple:
    """Mostly strings; some hashes and sets, whose DUMP payload depends on the order they were built in."""
    kind = rng.choices(("string", "hash", "set"), weights=(8, 1, 1))[0]
    if kind == "string":
        return name.encode(), kind, ("v-%s-" % name).encode() + b"x" * rng.randint(0, 200)
    members = tuple("m%d" % index for index in range(rng.randint(1, 200)))
    return name.encode(), kind, members


def plan_breakage(rng: random.Random, layout: Layout) -> list:
    """The commands that break a layout, chosen from the seed alone (the replies do not steer the choice)."""
    keys_by_slot = layout.keys_by_slot()
    tagged = sorted(slot for slot, keys in keys_by_slot.items() if len(keys) >= 10)
    focus = [rng.choice(tagged) if rng.random() < 0.85 else rng.randrange(SLOTS) for _index in range(rng.randint(1, 4))]
    masters = list(range(layout.masters))
    importers = {}  # slot -> masters told to import it, so far
    holders = {slot: {layout.owner(slot)} for slot in focus}  # slot -> masters that may hold its keys
    live_replicas = list(range(layout.masters, layout.size))
    ops = []
    for _step in range(rng.randint(2, 7)):
        slot = rng.choice(focus)
        owner = layout.owner(slot)
        others = [master for master in masters if master != owner]
        partner = rng.choice(sorted(importers.get(slot, ())) or others)
        bystanders = [master for master in others if master != partner] or others
        kinds = ["importing", "migrating", "node", "stable", "delslots", "addslots"]
        weights = [3, 3, 3, 1.5, 2, 1.5]
        if importers.get(slot) and keys_by_slot.get(slot):
            kinds.append("migrate")
            weights.append(4)
        if live_replicas:
            kinds.append("kill")
            weights.append(1)
        kind = rng.choices(kinds, weights=weights)[0]
        if kind == "importing":
            source = owner if rng.random() < 0.85 else rng.choice(others)
            target = rng.choice([master for master in masters if master != source])
            importers.setdefault(slot, set()).add(target)
            ops.append(Op(target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", Ref(source))))
        elif kind == "migrating":
            source = owner if rng.random() < 0.8 else rng.choice(bystanders)
            target = partner if partner != source else owner
            ops.append(Op(source, ("CLUSTER", "SETSLOT", slot, "MIGRATING", Ref(target))))
        elif kind == "migrate":
            target = rng.choice(sorted(importers[slot]))
            source = rng.choice(sorted(holders[slot] - {target}) or [owner])
            keys = keys_by_slot[slot]
            chosen = rng.sample(keys, rng.randint(1, max(1, len(keys) - 1)))
            holders[slot].add(target)
            ops.append(Op(source, ("MIGRATE", "127.0.0.1", Ref(target, "port"), "", 0, 5000, "KEYS", *chosen),
                          summary="MIGRATE to n%d %d of the %d keys of slot %d" % (
                              target, len(chosen), len(keys), slot)))
        elif kind == "node":
            new_owner = partner if rng.random() < 0.85 else owner
            receivers = rng.choice(([owner], [partner], [partner, owner], [owner, partner], [rng.choice(bystanders)],
                                    masters))
            ops += [Op(receiver, ("CLUSTER", "SETSLOT", slot, "NODE", Ref(new_owner))) for receiver in receivers]
        elif kind == "stable":
            ops.append(Op(rng.choice([owner, partner]), ("CLUSTER", "SETSLOT", slot, "STABLE")))
        elif kind == "delslots":
            node = owner if rng.random() < 0.7 else rng.choice(others)
            last = min(SLOTS - 1, slot + rng.randint(0, 3))
            ops.append(Op(node, ("CLUSTER", "DELSLOTS", *range(slot, last + 1))))
        elif kind == "addslots":
            ops.append(Op(rng.choice(masters), ("CLUSTER", "ADDSLOTS", slot)))
        else:
            victim = rng.choice(live_replicas)
            live_replicas.remove(victim)
            master = layout.replica_of[victim - layout.masters]
            ops.append(Op(victim, ("KILL",), summary="killed (replica of n%d)" % master))
    return ops


def form(nodes: list, layout: Layout, timeout: float = 30.0) -> None:
    """Masters claim their ranges before they meet (so none waits out a rejoin delay), then replicas attach."""
    masters = nodes[:layout.masters]
    for index, master in enumerate(masters):
        last = layout.first_slot(index + 1) - 1
        master.call("CLUSTER", "ADDSLOTSRANGE", layout.first_slot(index), last)
        master.call("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
    for index, node in enumerate(nodes):
        for other in nodes[index + 1:]:
            node.call("CLUSTER", "MEET", other.host, other.port, other.bus_port)
    master_ids = [master.node_id() for master in masters]
    deadline = time.monotonic() + timeout
    for replica, master in zip(nodes[layout.masters:], layout.replica_of):
        while True:
            try:
                replica.call("CLUSTER", "REPLICATE", master_ids[master])
                break
            except redis.ResponseError:
                # The replica has yet to learn its master through the meets.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    _wait_formed(nodes, layout, deadline)


def _wait_formed(nodes: list, layout: Layout, deadline: float) -> None:
    while True:
        views = set()
        for node in nodes:
            if b"cluster_state:ok" not in node.call("CLUSTER", "INFO"):
                break
            views.add(tuple(sorted(_stable_fields(line) for line in node.cluster_nodes().splitlines())))
        else:
            replicas = sum(1 for fields in next(iter(views)) if "slave" in fields[1]) if len(views) == 1 else -1
            if replicas == len(layout.replica_of):
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not form")
        time.sleep(0.05)


def load(nodes: list, layout: Layout) -> None:
    """Write every key straight to its owner, one pipeline per master."""
    pipes = {}
    for key, kind, value in layout.keys:
        master = layout.owner(key_slot(key))
        if master not in pipes:
            pipes[master] = nodes[master].client().pipeline(transaction=False)
        pipe = pipes[master]
        if kind == "string":
            pipe.set(key, value)
        elif kind == "hash":
            pipe.hset(key, mapping={member: member for member in value})
        else:
            pipe.sadd(key, *value)
    for pipe in pipes.values():
        pipe.execute()
        pipe.reset()


def apply(nodes: list, ops: list) -> list:
    """Send each command; the applied list, each line with the reply (or error) it got."""
    applied = []
    ids = [node.node_id() for node in nodes]
    for op in ops:
        if op.args == ("KILL",):
            nodes[op.node].kill()
            applied.append(op.describe())
            continue
        args = [_resolve(arg, nodes, ids) for arg in op.args]
        try:
            reply = nodes[op.node].call(*args)
            outcome = reply.decode() if isinstance(reply, bytes) else str(reply)
        except redis.RedisError as exc:
            outcome = "%s" % exc
        for index, node_id in enumerate(ids):
            outcome = outcome.replace(node_id, "n%d" % index)
        applied.append("%s -> %s" % (op.describe(), outcome))
    return applied


def _resolve(arg, nodes: list, ids: list):
    if isinstance(arg, Ref):
        return ids[arg.index] if arg.field == "id" else getattr(nodes[arg.index], arg.field)
    return arg


def _stable_fields(line: str) -> tuple:
    """A CLUSTER NODES line without what changes on every ping (ping/pong times, link state) or who reads it."""
    fields = line.split()
    flags = ",".join(flag for flag in fields[2].split(",") if flag != "myself")
    return (fields[0], flags, fields[3], fields[6]) + tuple(sorted(fields[8:]))


def _gossip_view(nodes: list) -> tuple:
    view = []
    for node in nodes:
        info = node.call("CLUSTER", "INFO").decode()
        state = next(line for line in info.splitlines() if line.startswith("cluster_state:"))
        view.append((state, tuple(sorted(_stable_fields(line) for line in node.cluster_nodes().splitlines()))))
    return tuple(view)


def settle(nodes: list, stable_for: float = SETTLE_STABLE_S, timeout: float = SETTLE_TIMEOUT_S) -> bool:
    """Until CLUSTER NODES and cluster_state stay the same on every node for stable_for seconds; False on timeout."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        view = _gossip_view(nodes)
        now = time.monotonic()
        if view != last:
            last, since = view, now
        elif now - since >= stable_for:
            return True
        if now > deadline:
            return False
        time.sleep(0.1)


def wait_flagged_failed(nodes: list, dead_ids: list, timeout: float = SETTLE_TIMEOUT_S) -> bool:
    """Until every live node flags the killed nodes fail (the state then stays put); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failed = [{fields[0] for fields in map(str.split, node.cluster_nodes().splitlines())
                   if "fail" in fields[2].split(",")} for node in nodes]
        if all(set(dead_ids) <= flagged for flagged in failed):
            return True
        time.sleep(0.1)
    return False


def snapshot(nodes: list) -> dict:
    """key -> DEBUG DIGEST-VALUE over every live master (a key on two masters must have one digest)."""
    digests = {}
    for node in nodes:
        with node.client() as conn:
            if conn.execute_command("ROLE")[0] != b"master":
                continue
            keys = list(conn.scan_iter(count=1000))
            pipe = conn.pipeline(transaction=False)
            for key in keys:
                pipe.execute_command("DEBUG", "DIGEST-VALUE", key)
            for key, reply in zip(keys, pipe.execute()):
                digest = reply[0]
                if digests.setdefault(key, digest) != digest:
                    raise RuntimeError("key %r has two different values on two masters" % key)
    return digests


def break_cluster(nodes: list, seed: int) -> BrokenState:
    """Form, load and break the cluster a seed describes on nodes (at least the layout's size), then settle."""
    rng = random.Random(seed)
    layout = make_layout(rng, seed)
    ops = plan_breakage(rng, layout)
    nodes = nodes[:layout.size]
    form(nodes, layout)
    load(nodes, layout)
    ids = [node.node_id() for node in nodes]
    applied = apply(nodes, ops)
    notes = []
    live = [node for node in nodes if node.process.poll() is None]
    dead_ids = [ids[index] for index, node in enumerate(nodes) if node.process.poll() is not None]
    if dead_ids and not wait_flagged_failed(live, dead_ids):
        notes.append("the killed replica was not flagged fail everywhere within %.0f s" % SETTLE_TIMEOUT_S)
    if not settle(live):
        notes.append("gossip did not settle within %.0f s" % SETTLE_TIMEOUT_S)
    survivors = snapshot(live)
    if len(survivors) < len(layout.keys):
        dropped = len(layout.keys) - len(survivors)
        notes.append("%d of %d keys were dropped by Redis while breaking" % (dropped, len(layout.keys)))
    return BrokenState(seed=seed, layout=layout, nodes=nodes, breakage=applied, snapshot=survivors, notes=notes)


def _build(seed: int) -> tuple:
    """Fresh processes broken as the seed says, with the processes (the caller closes them).

    Fresh processes per state cost about what resetting reused ones does (measured for 8 nodes: starting
    them 0.11-0.33 s, FLUSHALL and CLUSTER RESET HARD 0.06-0.66 s; forming then takes about 2 s either way),
    and leave nothing of the previous state behind (killed replicas, epochs, forget lists)."""
    layout = make_layout(random.Random(seed), seed)
    nodes = RedisNodes(layout.size, extra_args=NODE_ARGS)
    try:
        return nodes, break_cluster(nodes.nodes, seed)
    except BaseException:
        nodes.close()
        raise


class StateSupply:
    """Broken states for seeds taken in order: the next seed's cluster is built and broken in the background
    while the caller repairs the current one (building mostly waits on gossip)."""

    def __init__(self, seeds):
        self._seeds = list(seeds)
        self._builder = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending = {}
        self._current = None

    def state(self, seed: int) -> BrokenState:
        """The state of seed; the previous one's nodes are stopped."""
        self._release_current()
        future = self._pending.pop(seed, None) or self._builder.submit(_build, seed)
        following = self._seeds[self._seeds.index(seed) + 1:] if seed in self._seeds else []
        if following and following[0] not in self._pending:
            self._pending[following[0]] = self._builder.submit(_build, following[0])
        self._current, state = future.result()
        return state

    def _release_current(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def close(self) -> None:
        self._release_current()
        for future in self._pending.values():
            with contextlib.suppress(Exception):
                future.result()[0].close()
        self._pending.clear()
        self._builder.shutdown()


def run_ours(state: BrokenState, wait_timeout: float = FIX_WAIT_TIMEOUT_S) -> tuple:
    """redis_cluster_fix twice in one ansible-playbook run (the second must change nothing); both results."""
    entry = state.live_nodes[0]
    args = {"login_host": entry.host, "login_port": entry.port, "wait_timeout": wait_timeout}
    run = run_tasks([{"redisops.cluster.redis_cluster_fix": args}, {"redisops.cluster.redis_cluster_fix": args}])
    return run.results[0], run.results[1]


@dataclasses.dataclass
class CliRun:
    rc: int | None  # None when it ran out of time
    output: str

    def reason(self) -> str:
        """The last error line redis-cli printed, or how it ended."""
        if self.rc is None:
            return "redis-cli --cluster fix did not finish within %.0f s" % REDIS_CLI_TIMEOUT_S
        errors = [line for line in self.output.splitlines() if "[ERR]" in line or "ERR" in line.split(" ", 1)[0]]
        return (errors[-1] if errors else "rc %d" % self.rc).strip()


def run_redis_cli_fix(state: BrokenState, timeout: float = REDIS_CLI_TIMEOUT_S) -> CliRun:
    entry = state.live_nodes[0]
    args = [REDIS_CLI, "--cluster", "fix", entry.address, "--cluster-yes"]
    try:
        # --cluster-yes does not cover the slot coverage questions: those read their answer from stdin.
        proc = subprocess.run(args, input="yes\n" * 1000, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, check=False)
        return CliRun(rc=proc.returncode, output=proc.stdout)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return CliRun(rc=None, output=output)


def check_repair(state: BrokenState, second_run: dict | None = None, wait: float = CHECK_WAIT_S) -> Verdict:
    """Is the state repaired: redis-cli check clean and cluster_state:ok on every live node (within wait seconds
    of gossip), every surviving key readable from its slot's owner with its value, and (for our module) a
    second run that changed nothing."""
    live = state.live_nodes
    deadline = time.monotonic() + wait
    while True:
        reasons = _health_problems(live)
        if not reasons or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing, unreadable = _key_problems(live, state.snapshot)
    if missing:
        reasons.append("%d key(s) lost or changed, e.g. %s" % (len(missing), missing[0].decode(errors="replace")))
    if unreadable:
        reasons.append("%d key(s) not readable from their slot's owner, e.g. %s" % (len(unreadable), unreadable[0]))
    if second_run is not None:
        if second_run.get("failed"):
            reasons.append("second run failed: %s" % second_run.get("msg"))
        elif second_run.get("changed"):
            reasons.append("second run changed: %s" % "; ".join(second_run.get("plan") or []))
    return Verdict(repaired=not reasons, keys_lost=len(missing), reasons=reasons)


def _health_problems(live: list) -> list:
    problems = []
    for node in live:
        try:
            if b"cluster_state:ok" not in node.call("CLUSTER", "INFO"):
                problems.append("%s reports cluster_state:fail" % node.address)
        except redis.RedisError as exc:
            problems.append("%s: %s" % (node.address, exc))
    problems += ["redis-cli check: " + line for line in redis_cli_complaints(live[0])]
    return problems


def redis_cli_complaints(node) -> list:
    """What redis-cli --cluster check objects to: its [ERR] and [WARNING] lines, and the [OK] lines it left out."""
    report = re.sub(r"\x1b\[[0-9;]*m", "", redis_cli_check(node))
    complaints = [line.strip() for line in report.splitlines() if "[ERR]" in line or "[WARNING]" in line]
    for expected in ("[OK] All nodes agree about slots configuration.", "[OK] All 16384 slots covered."):
        if expected not in report:
            complaints.append("missing: " + expected)
    return complaints


def _key_problems(live: list, expected: dict) -> tuple:
    """(keys gone or changed everywhere, keys still somewhere with their value but not readable from the owner)."""
    owners = _slot_owner_nodes(live)
    by_owner = {}
    for key in expected:
        by_owner.setdefault(owners.get(key_slot(key)), []).append(key)
    readable = set()
    for owner, keys in by_owner.items():
        if owner is None:
            continue
        with owner.client() as conn:
            pipe = conn.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)  # a keyed command: answers MOVED, ASK or CLUSTERDOWN unless the owner serves it
                pipe.execute_command("DEBUG", "DIGEST-VALUE", key)
            replies = pipe.execute(raise_on_error=False)
        readable.update(key for index, key in enumerate(keys)
                        if replies[2 * index] == 1 and isinstance(replies[2 * index + 1], list)
                        and replies[2 * index + 1][0] == expected[key])
    present = snapshot(live)
    missing = [key for key in expected if key not in readable and present.get(key) != expected[key]]
    unreadable = ["%s (slot %d)" % (key.decode(errors="replace"), key_slot(key))
                  for key in expected if key not in readable and present.get(key) == expected[key]]
    return missing, unreadable


def _slot_owner_nodes(live: list) -> dict:
    """slot -> the live node that serves it in its own view."""
    by_id = {}
    for node in live:
        with contextlib.suppress(redis.RedisError):
            by_id[node.node_id()] = node
    owners = {}
    for node_id, node in by_id.items():
        for line in node.cluster_nodes().splitlines():
            fields = line.split()
            if "myself" not in fields[2]:
                continue
            for token in fields[8:]:
                if token.startswith("["):
                    continue
                first, _sep, last = token.partition("-")
                for slot in range(int(first), int(last or first) + 1):
                    owners[slot] = node
    return owners
