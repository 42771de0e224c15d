# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs a Plan's steps against live nodes and waits where Redis needs time. Private to redisops.cluster.

Consecutive steps of one action run in parallel across nodes (in order on each node). The executor
stops at the first step it cannot do, with the steps done so far, so the next run can finish.
"""

from __future__ import annotations

import json
import threading
import time

from ._client import (
    SLOT, ClusterClientError, NodeConnection, RedisError, ResponseError, describe_error, fan_out, observe_node, per_slot,
    resolve_ip,
)
from ._migrate import (
    DEFAULT_PIPELINE, DEFAULT_TIMEOUT_MS, KeyConflict, Patience, clients_at_work, cluster_down, hand_first_slots,
    keys_in_slots, move_slot_keys, move_slots, purge_keys,
)
from ._planner import (
    ADD_SLOTS, BUMP_EPOCH, FAILOVER, FORGET, MEET, MIGRATE_SLOTS, MOVE_KEYS, NO_FAILOVER, PURGE_KEYS, REMOVE_NODE,
    REPLICATE, SET_EPOCH, SETSLOT, WAIT_CONVERGED, WAIT_SYNCED, WAITS,
)
from ._ownership import never_served, never_settles
from ._slots import count_slots, format_ranges, slots_from_ranges
from ._topology import parse_cluster_nodes, parse_info, split_address, unsettled

POLL_INTERVAL = 0.1
# How long views must show a cluster that cannot settle by itself before a wait gives up: one read may catch
# a node between two gossip messages.
HOPELESS_FOR = 1.0
# How long no node may list a removed node before its removal counts as done. Each FORGET also bans the node from
# gossip on that node for 60 s, so once every node has forgotten it none relearns it from a message still in flight.
FORGOTTEN_FOR = 0.2
# Seconds after which a manual failover that has not switched the roles is asked again: Redis drops one that does not
# complete within 5 s (CLUSTER_MF_TIMEOUT).
MANUAL_FAILOVER_RETRY = 6.0
# Steps that touch one node each and may run on many nodes at once (FORGET must: the 60 s ban window). A plan
# separates SETSLOT writes whose order across nodes matters by a step of another kind.
PARALLEL = frozenset((ADD_SLOTS, SET_EPOCH, MEET, REPLICATE, FORGET, SETSLOT))
NO_FAILOVER_SETTING = "cluster-replica-no-failover"


class ExecutionError(Exception):
    """A step failed or a wait timed out; completed lists what was done before, wrote whether any write was sent
    (a failed batch may have written on some of its nodes)."""

    def __init__(self, message: str, completed, wrote: bool = False):
        super().__init__(message)
        self.completed = list(completed)
        self.wrote = wrote


class Executor:
    def __init__(self, addresses, options, wait_timeout: float = 60.0, pipeline: int = DEFAULT_PIPELINE,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS, replace: bool = False, parallel: int = 1,
                 progress_file: str | None = None):
        self.addresses = tuple(addresses)
        self.options = options
        self.wait_timeout = wait_timeout
        self.pipeline = pipeline
        self.timeout_ms = timeout_ms
        self.replace = replace
        self.parallel = max(1, parallel)
        self.progress_file = progress_file
        self.keys_moved = 0
        self.slots_moved = 0
        self._slots_total = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._in_flight = {}
        self._connections = {}
        # address -> its cluster-replica-no-failover before a NO_FAILOVER step, put back when the node is reset.
        self._failover_settings = {}

    def connection(self, node: str) -> NodeConnection:
        if node not in self._connections:
            host, port = split_address(node)
            self._connections[node] = NodeConnection(host, port, self.options)
        return self._connections[node]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()

    def run(self, plan) -> list:
        completed, wrote = [], False
        try:
            for batch in _batches(plan.steps):
                if batch[0].action == WAIT_CONVERGED:
                    self._wait(batch[0])
                    completed.extend(step.description for step in batch)
                    continue
                wrote = wrote or batch[0].action not in WAITS
                if batch[0].action == MIGRATE_SLOTS:
                    self._migrate_all(batch)
                else:
                    # Connections are made before the threads share the cache; cluster-wide steps name no node.
                    for node in {step.node for step in batch} - {""}:
                        self.connection(node)
                    fan_out(self._run_node_steps, _by_node(batch))
                completed.extend(step.description for step in batch)
        except (RedisError, OSError) as exc:
            raise ExecutionError(describe_error(exc), completed, wrote) from None
        except (ClusterClientError, KeyConflict) as exc:
            raise ExecutionError(str(exc), completed, wrote) from None
        except ExecutionError as exc:
            raise ExecutionError(str(exc), completed, wrote) from None
        finally:
            self.close()
        return completed

    def _run_node_steps(self, steps) -> None:
        for step in steps:
            try:
                HANDLERS[step.action](self, step)
            except ResponseError as exc:
                raise ExecutionError("%s failed: %s" % (step.description, describe_error(exc)), ()) from None

    # --- writes ---

    def add_slots(self, step) -> None:
        conn = self.connection(step.node)
        try:
            conn.call("CLUSTER", "ADDSLOTSRANGE", *[bound for pair in step.args for bound in pair])
        except ResponseError as exc:
            if "subcommand" not in str(exc).lower():
                raise
            # Redis before 7.0 has no ADDSLOTSRANGE.
            conn.call("CLUSTER", "ADDSLOTS", *slots_from_ranges(step.args))

    def set_epoch(self, step) -> None:
        self.connection(step.node).call("CLUSTER", "SET-CONFIG-EPOCH", step.args[0])

    def meet(self, step) -> None:
        host, port, bus_port = step.args
        self.connection(step.node).call("CLUSTER", "MEET", resolve_ip(host), port, bus_port)

    def replicate(self, step) -> None:
        # A replica may not have heard of its master through gossip yet: retry within the wait bound.
        deadline = time.monotonic() + self.wait_timeout
        while True:
            try:
                self.connection(step.node).call("CLUSTER", "REPLICATE", step.args[0])
                return
            except ResponseError as exc:
                if "unknown node" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
            time.sleep(POLL_INTERVAL)

    def setslot(self, step) -> None:
        """One SETSLOT subcommand for every slot of the step's ranges, in one pipeline."""
        how, partner = step.args[:2]
        command = ("CLUSTER", "SETSLOT", SLOT, how) + ((partner,) if partner else ())
        replies = self.connection(step.node).pipeline([per_slot(list(slots_from_ranges(step.args[2:])), command)])
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if errors:
            raise errors[0]

    def move_keys(self, step) -> None:
        slot, target, host, port = step.args[:4]
        self.keys_moved += self._while_cluster_down(
            step, lambda: move_slot_keys(self.connection(step.node), self.connection(target), host, port, slot,
                                         self.options, self.pipeline, self.timeout_ms, self.replace))

    def _while_cluster_down(self, step, action):
        """action(), retried while a node answers CLUSTERDOWN: it refuses MIGRATE and RESTORE until it sees every
        slot served and its rejoin delay after joining (up to the node timeout) is over. A node that sees slots
        that nothing will ever serve in its view fails the step at once."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            try:
                return action()
            except ResponseError as exc:
                if not cluster_down(exc) or time.monotonic() > deadline:
                    raise
                self._refuse_unservable(step)
            time.sleep(POLL_INTERVAL)

    def _refuse_unservable(self, step) -> None:
        reason = self._unservable(step.node, step.args[1])
        if reason:
            raise ExecutionError("%s: %s" % (step.description, reason), ())

    def _unservable(self, *addresses) -> str:
        """Why a node among addresses will keep answering CLUSTERDOWN: slots it sees served by nobody that no gossip
        will fill ('' when there are none)."""
        observations = self._observe()
        for obs in observations:
            if obs.address.key in addresses:
                unserved = never_served(obs, observations)
                if unserved:
                    return ("%s answers CLUSTERDOWN and sees slot(s) %s served by nobody, which no gossip will fill; "
                            "run redisops.cluster.redis_cluster_fix" % (obs.address.key, format_ranges(unserved)))
        return ""

    def purge_keys(self, step) -> None:
        """Delete what the replica keeps of the step's slots through its master; done once the replica holds none."""
        replica_address, owner = step.args[:2]
        slots = list(slots_from_ranges(step.args[2:]))
        replica = self.connection(replica_address)
        purge_keys(self.connection(step.node), owner, keys_in_slots(replica, slots))
        self._until(lambda: not keys_in_slots(replica, slots),
                    "%s: the replica still holds keys of those slots" % step.description)

    def bump_epoch(self, step) -> None:
        self.connection(step.node).call("CLUSTER", "BUMPEPOCH")

    def failover(self, step) -> None:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on the replica; done once ROLE says it is a master and, when the old
        master answers, that the old master replicates it. A manual failover that does not complete within Redis'
        own limit (5 s) is dropped silently by the replica: it is asked again while the replica still replicates."""
        mode, old_master = step.args
        hint = "" if mode else "; a default failover needs the master to answer and agree (mode force does not)"
        deadline = time.monotonic() + self.wait_timeout
        while True:
            if self._role(step.node) != b"master":
                self.connection(step.node).call("CLUSTER", "FAILOVER", *((mode,) if mode else ()))
            retry_at = min(deadline, time.monotonic() + MANUAL_FAILOVER_RETRY)
            while time.monotonic() < retry_at:
                if self._role(step.node) == b"master" and (not old_master or self._role(old_master) == b"slave"):
                    return
                time.sleep(POLL_INTERVAL)
            if time.monotonic() >= deadline:
                raise ExecutionError("%s: the roles have not switched%s after %.0f s (wait_timeout)"
                                     % (step.description, hint, self.wait_timeout), ())

    def _role(self, address: str):
        """The first field of ROLE, or None while the node does not answer (it may be restarting)."""
        try:
            return self.connection(address).call("ROLE")[0]
        except (RedisError, OSError):
            self._connections.pop(address).close()
            return None

    def wait_synced(self, step) -> None:
        """Until the replica's own view names its master, its link is up and its initial sync is over."""
        def synced() -> bool:
            conn = self.connection(step.node)
            me = next(e for e in parse_cluster_nodes(conn.call("CLUSTER", "NODES").decode()) if e.myself)
            info = parse_info(conn.call("INFO", "replication").decode())
            return (me.master_id == step.args[0] and info.get("master_link_status") == "up"
                    and not info.get("master_sync_in_progress"))

        self._until(synced, "%s: the replica's link to its master is not up" % step.description)

    def remove_node(self, step) -> None:
        """Every other node forgets the node at once (inside the 60 s ban a FORGET sets), a reachable one is reset so it
        forgets them too and takes a new id, and a node that gossip taught it again forgets it again; the node leaves
        the nodes waited on."""
        node_id, address = step.args
        others = [key.key for key in self.addresses if key.key != address]
        for key in others:
            self.connection(key)
        if address:
            self._refuse_serving(step, node_id, address)
        fan_out(lambda key: self._forget(key, node_id), others)
        if address:
            # HARD: a new node id, which can join again at once. Every node that forgot the old id bans it for 60 s,
            # and Redis 8.0 then drops even the node a MEET leads to (7.0 and Valkey 8.1 take it).
            self.connection(address).call("CLUSTER", "RESET", "HARD")
            if address in self._failover_settings:
                self.connection(address).call("CONFIG", "SET", NO_FAILOVER_SETTING, self._failover_settings.pop(address))
            self.addresses = tuple(key for key in self.addresses if key.key != address)
        quiet_since = [None]

        def forgotten() -> bool:
            knowing = [key for key in others if node_id.encode() in self.connection(key).call("CLUSTER", "NODES")]
            fan_out(lambda key: self._forget(key, node_id), knowing)
            now = time.monotonic()
            quiet_since[0] = None if knowing else (quiet_since[0] or now)
            return not knowing and now - quiet_since[0] >= FORGOTTEN_FOR

        self._until(forgotten, "%s: some nodes keep learning it again" % step.description)

    def no_failover(self, step) -> None:
        conn = self.connection(step.node)
        try:
            setting = conn.call("CONFIG", "GET", NO_FAILOVER_SETTING)
            if len(setting) == 2:
                conn.call("CONFIG", "SET", NO_FAILOVER_SETTING, "yes")
                self._failover_settings[step.node] = setting[1]
        except ResponseError:
            # A login user without config|get and config|set: the removal still stops before any FORGET should a
            # failover promote the node (_refuse_serving).
            pass

    def _refuse_serving(self, step, node_id: str, address: str) -> None:
        """Stop before any FORGET when the leaving node serves slots in its own view: a drained master is a replica
        of the master that took its last slots, and a failover of that master may promote it after the plan was
        made; forgetting it then would leave its slots served by a node most of the cluster forgot."""
        for entry in parse_cluster_nodes(self.connection(address).call("CLUSTER", "NODES").decode()):
            if entry.id == node_id and entry.is_master and entry.slots:
                raise ExecutionError("%s: it serves %d slot(s) %s again (a failover promoted it after the plan was "
                                     "made); run the removal again" % (
                                         step.description, count_slots(entry.slots), format_ranges(entry.slots)), ())

    def _forget(self, address: str, node_id: str) -> None:
        try:
            self.connection(address).call("CLUSTER", "FORGET", node_id)
        except ResponseError as exc:
            # Already forgotten, by this run or by gossip of a FORGET elsewhere; or the node still replicates it, until
            # it hears that its master has changed (then the next round forgets it).
            if "unknown node" not in str(exc).lower() and "my master" not in str(exc).lower():
                raise

    def _until(self, condition, failure: str) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ExecutionError("%s after %.0f s (wait_timeout)" % (failure, self.wait_timeout), ())
            time.sleep(POLL_INTERVAL)

    def forget(self, step) -> None:
        self.connection(step.node).call("CLUSTER", "FORGET", step.args[0])

    # --- moving slots ---

    def _migrate_all(self, steps) -> None:
        """Moves run together, up to parallel at once, as long as a node gives in at most one of them and never
        gives and receives at once; a target may import from several sources at once (its RESTOREs are cheap,
        the sources' MIGRATEs are the work)."""
        self._slots_total = sum(count_slots(step.args[4]) for step in steps)
        # A target that serves no slot gets its first slots from every move before any runs at full speed; clients
        # at work then have client_grace seconds to meet it through MOVED (plan_moves), while more slots go over
        # without opening them, each move taking an equal share of it.
        introducing = [step for step in steps if step.args[5]]
        grace = max((step.args[5][2] for step in introducing), default=0)
        if grace and not clients_at_work([self.connection(address.key) for address in self.addresses]):
            grace = 0
        done = {}
        for step in introducing:
            until = time.monotonic() + grace / len(introducing) if grace else 0.0
            done[step.description] = self._migrate_pair(step, first=True, until=until)
        pending = list(steps)
        while pending:
            giving, taking, round_steps = set(), set(), []
            for step in pending:
                source, target = step.node, step.args[0]
                if source not in giving | taking and target not in giving and len(round_steps) < self.parallel:
                    giving.add(source)
                    taking.add(target)
                    round_steps.append(step)
            fan_out(lambda step: self._migrate_pair(step, moved_first=done.get(step.description, ())), round_steps)
            pending = [step for step in pending if step not in round_steps]

    def _migrate_pair(self, step, first: bool = False, until: float = 0.0, moved_first=()) -> list:
        """The move of step: its first slots, then others a few at a time until the monotonic clock reaches until
        (first), or the slots not in moved_first; the slots moved."""
        target_address, target_id, host, port, ranges, first_slots = step.args
        direct, keyed = (slots_from_ranges(part) for part in first_slots[:2]) if first_slots else ((), ())
        # Own connections: pairs run on threads, and a connection serves one thread.
        others = [address for address in self.addresses if address.key not in (step.node, target_address)]
        conns = [NodeConnection(*split_address(step.node), self.options),
                 NodeConnection(*split_address(target_address), self.options)]
        other_conns = []
        try:
            for address in others:
                conn = NodeConnection(address.host, address.port, self.options)
                conns.append(conn)
                if conn.call("ROLE")[0] == b"master":
                    other_conns.append(conn)
            pair = (step.node_id, target_id, host, port)

            def progress(slots, keys):
                self._progress(step, slots, keys)

            rest = sorted(set(slots_from_ranges(ranges)) - set(moved_first))
            patience = Patience(self.wait_timeout, lambda: self._unservable(step.node, target_address))
            if first:
                moved, rest = hand_first_slots(conns[0], conns[1], other_conns, pair, list(direct), list(keyed),
                                               self.options, self.pipeline, self.timeout_ms, self.replace, progress,
                                               patience, rest, until)
            else:
                moved = move_slots(conns[0], conns[1], other_conns, pair, rest, self.options, self.pipeline,
                                   self.timeout_ms, self.replace, progress=progress, patience=patience)
            with self._lock:
                self.keys_moved += moved
                self._in_flight.pop(step.description, None)
            return rest
        except ResponseError as exc:
            raise ExecutionError("%s failed: %s" % (step.description, describe_error(exc)), ()) from None
        finally:
            for conn in conns:
                conn.close()

    def _progress(self, step, slots: int, keys: int) -> None:
        """One JSON line per batch of slots: how far the whole run is, and how fast keys move."""
        with self._lock:
            self.slots_moved += slots
            self._in_flight[step.description] = keys
            keys_done = self.keys_moved + sum(self._in_flight.values())
            elapsed = time.monotonic() - self._started
            line = {"time": round(time.time(), 3), "move": step.description, "slots_done": self.slots_moved,
                    "slots_total": self._slots_total, "keys_moved": keys_done,
                    "keys_per_s": round(keys_done / elapsed) if elapsed else None}
            if self.progress_file:
                with open(self.progress_file, "a") as handle:
                    handle.write(json.dumps(line) + "\n")

    # --- waits ---

    def _observe(self) -> list:
        return fan_out(lambda address: observe_node(address, self.options), self.addresses)

    def _wait(self, step) -> None:
        """Poll until the nodes settle, within wait_timeout; fail at once (after HOPELESS_FOR, as the views may be
        read mid-gossip) when they cannot settle by themselves."""
        started = time.monotonic()
        hopeless_since = None
        while True:
            observations = self._observe()
            problem = unsettled(observations)
            if problem is None:
                return
            now = time.monotonic()
            hopeless = never_settles(observations)
            hopeless_since = (hopeless_since or now) if hopeless else None
            if hopeless and now - hopeless_since >= HOPELESS_FOR:
                raise ExecutionError("cannot %s: %s; nothing will change that by itself - run "
                                     "redisops.cluster.redis_cluster_fix" % (step.description, hopeless), ())
            if now - started > self.wait_timeout:
                raise ExecutionError("gave up after %.0f s (wait_timeout) to %s: %s"
                                     % (self.wait_timeout, step.description, problem), ())
            time.sleep(POLL_INTERVAL)


HANDLERS = {
    ADD_SLOTS: Executor.add_slots,
    SET_EPOCH: Executor.set_epoch,
    MEET: Executor.meet,
    REPLICATE: Executor.replicate,
    SETSLOT: Executor.setslot,
    MOVE_KEYS: Executor.move_keys,
    BUMP_EPOCH: Executor.bump_epoch,
    PURGE_KEYS: Executor.purge_keys,
    FORGET: Executor.forget,
    FAILOVER: Executor.failover,
    WAIT_SYNCED: Executor.wait_synced,
    REMOVE_NODE: Executor.remove_node,
    NO_FAILOVER: Executor.no_failover,
}


def _batches(steps) -> list:
    batches = []
    for step in steps:
        if batches and batches[-1][0].action == step.action and (step.action in PARALLEL or step.action == MIGRATE_SLOTS):
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


def _by_node(batch) -> list:
    grouped = {}
    for step in batch:
        grouped.setdefault(step.node, []).append(step)
    return list(grouped.values())
