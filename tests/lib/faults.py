# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults injected into a node while a module moves slots or a rolling restart runs: where (the move's source, its
target or a bystander; the instance restarted last, a master not yet restarted or a replica), when (once the run's
progress file reports a seeded share of its slots done, or a seeded number of instances has restarted) and what
(kill -9 then a restart, or SIGSTOP past the node timeout then SIGCONT), every choice drawn from the trial's seed."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import time

import redis
from cluster_checks import cluster_nodes_fields
from redis.crc import key_slot

NODE_TIMEOUT_S = 2.0  # redis_harness's cluster-node-timeout
# A node writes every acknowledged write to disk before it replies (a killed node restarts with all of them).
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
# How a move names its source and its target in the progress file, e.g.
# "127.0.0.1:7000 (a1b2c3d4): move 1365 slot(s) 4096-5460 (5012 key(s)) to 127.0.0.1:7006 (e5f6a7b8)".
_MOVE = re.compile(r"^(\S+) \(\w+\): move .* to (\S+) \(\w+\)")
# What a node logs about slots and data it gives up or takes: open slots found at load, a master turned replica (it
# drops its data for its new master's), a failover, a full resynchronisation, config epoch changes.
_LOG_EVENTS = re.compile(r"I have keys|slot|[Ii]mporting|[Mm]igrating|as a replica|[Ff]ailover|Flushing"
                         r"|MASTER <-> REPLICA sync|configEpoch|DB loaded|Ready to accept|Cluster state changed")
TRACEBACK = "Traceback (most recent call last)"
_FAILED_MSG = re.compile(r'"msg": "((?:[^"\\]|\\.)*)"')
# What a replica logs when it becomes a master, after an election or by a takeover without one; and what it logs
# before the election of a coordinated failover (CLUSTER FAILOVER without FORCE or TAKEOVER), which waits until the
# replica has all its master acknowledged and so loses no write.
_PROMOTED = re.compile(r"Failover election won|Taking over the master")
_COORDINATED = "manual failover can start"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One seeded trial: the operation, the fault, whom it hits, and the seed every other choice comes from."""

    op: str  # rebalance, reshard, remove, restart (the rolling_restart playbook)
    fault: str  # kill (kill -9, later restarted) or stop (SIGSTOP past the node timeout, then SIGCONT)
    # source, target or bystander of the move in progress at the fault; last-target, the target of the run's last move
    # once every slot is handed over, killed past the node timeout; in a rolling restart, the instance restarted last
    # (syncing), a master not yet restarted (master) or a replica (bystander)
    victim: str
    seed: int

    @property
    def id(self) -> str:
        return "%s-%s-%s-seed%d" % (self.op, self.fault, self.victim, self.seed)

    def draw(self) -> Draw:
        return Draw.of(self)


@dataclasses.dataclass(frozen=True)
class Draw:
    """The trial's random choices."""

    at_share: float  # the fault comes once this share of the run's slots (or instances restarted) is done
    down_s: float  # how long the victim stays killed or stopped
    pick: int  # which candidate, wherever the trial picks one (bystander, master, slots)
    amount: float  # how much the operation moves, from 0 to 1 of its range

    @classmethod
    def of(cls, trial: Trial) -> Draw:
        rng = random.Random("%s/%d" % (trial.op, trial.seed))
        at_share = 1.0 if trial.victim == "last-target" else rng.uniform(0.05, 0.7)
        # A stopped node always stays silent past the node timeout, as does the last target; another killed one comes
        # back before it or after.
        past_timeout = trial.fault == "stop" or trial.victim == "last-target"
        down_s = NODE_TIMEOUT_S + rng.uniform(1.0, 2.5) if past_timeout else rng.uniform(0.3, 4.5)
        return cls(at_share=at_share, down_s=down_s, pick=rng.randrange(1 << 30), amount=rng.random())


def parse_move(description: str) -> tuple:
    """(source address, target address) of a progress line's move."""
    match = _MOVE.match(description)
    if not match:
        raise AssertionError("not a move: %r" % description)
    return match.group(1), match.group(2)


def progress_lines(path: str) -> list:
    """The complete lines of a progress file so far."""
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_for_share(path: str, proc: subprocess.Popen, share: float, timeout: float = 120.0):
    """The first progress line with at least share of the run's slots done (None when the run ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in progress_lines(path):
            if line["slots_done"] >= share * line["slots_total"]:
                return line
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    raise AssertionError("the run reported no progress past %.0f%% within %.0f s" % (100 * share, timeout))


def run_id(node) -> str | None:
    """INFO server's run_id, new at every start of the server; None while the node does not answer."""
    try:
        with node.client(socket_connect_timeout=1) as conn:
            return conn.info("server")["run_id"]
    except redis.RedisError:
        return None


def wait_for_restarts(nodes, run_ids: dict, count: int, proc: subprocess.Popen, timeout: float = 300.0):
    """The addresses of the first count nodes seen with a run_id other than run_ids' (address -> run_id), in the order
    seen: the last one restarted last (None when the run ends first)."""
    restarted = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            if node.address not in restarted and run_id(node) not in (None, run_ids[node.address]):
                restarted.append(node.address)
        if len(restarted) >= count:
            return restarted
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    raise AssertionError("%d of %d instances restarted within %.0f s" % (len(restarted), count, timeout))


def strike(node, fault: str, down_s: float) -> None:
    """The fault on a harness RedisNode, over once the node serves again."""
    if fault == "kill":
        node.kill()
        time.sleep(down_s)
        node.restart()
    else:
        node.pause()
        time.sleep(down_s)
        node.resume()


def finish(proc: subprocess.Popen, timeout: float = 180.0) -> tuple:
    """(return code, output) of a background run."""
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        output = proc.communicate()[0]
        raise AssertionError("the interrupted run did not end within %.0f s:\n%s" % (timeout, output)) from None
    return proc.returncode, output


def failed_message(output: str) -> str:
    """The message of the first task that failed in an ansible-playbook output; '' when none failed."""
    match = _FAILED_MSG.search(output.split("FAILED!", 1)[1]) if "FAILED!" in output else None
    return json.loads('"%s"' % match.group(1)) if match else ""


def no_failure_flags(nodes) -> bool:
    """No node flags another fail or fail?."""
    return not any({"fail", "fail?"} & set(fields[2].split(",")) for node in nodes
                   for fields in cluster_nodes_fields(node))


def log_sizes(nodes) -> dict:
    """address -> the size of the node's log now: where unplanned_promotions starts reading."""
    return {node.address: os.path.getsize(node.log_file) if os.path.exists(node.log_file) else 0 for node in nodes}


def unplanned_promotions(nodes, since: dict) -> list:
    """The promotions of replicas to master logged since log_sizes' sizes that were no coordinated failover (an
    election after the master failed, a FORCE or a TAKEOVER): those where the master's last acknowledged writes may
    be lost. As "address: log line"."""
    found = []
    for node in nodes:
        with open(node.log_file, errors="replace") as handle:
            handle.seek(since.get(node.address, 0))
            coordinated = False
            for line in handle.read().splitlines():
                if _COORDINATED in line:
                    coordinated = True
                elif _PROMOTED.search(line):
                    if not coordinated:
                        found.append("%s: %s" % (node.address, line.strip()))
                    coordinated = False
    return found


def record(trial: Trial, outcome: dict) -> None:
    """One line per trial in the file FAULTS_LOG names (docs/reliability.md's tables are made from it)."""
    print(json.dumps(outcome))
    if os.environ.get("FAULTS_LOG"):
        with open(os.environ["FAULTS_LOG"], "a") as handle:
            handle.write(json.dumps(dict(outcome, trial=trial.id)) + "\n")


def tracebacks(*texts) -> list:
    """The texts (module outputs, results as JSON) that hold a Python traceback."""
    return [text for text in texts if TRACEBACK in text]


def key_places(nodes) -> dict:
    """key -> the addresses of the running nodes (masters and replicas) that hold it."""
    places = {}
    for node in nodes:
        if node.process.poll() is not None:
            continue
        with node.client() as conn:
            for key in conn.scan_iter(count=1000):
                places.setdefault(key, []).append(node.address)
    return places


def loss_report(nodes, missing, places_before: dict, owners_before: dict, owners_after: dict, moves) -> str:
    """Where keys lost in a trial were and are: their slots, each slot's owner before and after, the moves that
    named it, the nodes that still hold a copy, and what each node logged about those slots or its data."""
    slots = sorted({key_slot(key) for key in missing})
    owner_before = {slot: address for address, owned in owners_before.items() for slot in owned}
    owner_after = {slot: address for address, owned in owners_after.items() for slot in owned}
    places_now = key_places(nodes)
    lines = ["lost keys' slots: %s" % slots]
    for slot in slots:
        keys = [key for key in missing if key_slot(key) == slot]
        lines.append("slot %d: %d key(s), held by %s before, %s now; owner %s before, %s after; moves: %s" % (
            slot, len(keys), sorted({place for key in keys for place in places_before.get(key, [])}),
            sorted({place for key in keys for place in places_now.get(key, [])}), owner_before.get(slot),
            owner_after.get(slot), [move for move in moves if _names_slot(move, slot)] or "none"))
    pattern = re.compile(r"\b(%s)\b" % "|".join(str(slot) for slot in slots[:200]))
    for node in nodes:
        try:
            with open(node.log_file, errors="replace") as handle:
                logged = handle.read().splitlines()
        except FileNotFoundError:
            continue
        events = [line for line in logged if _LOG_EVENTS.search(line) or (slots and pattern.search(line))]
        shown = "\n  ".join(events[-60:])
        lines.append("%s redis.log (%d of %d line(s)):\n  %s" % (node.address, len(events), len(logged), shown))
    return "\n".join(lines)


def _names_slot(move: str, slot: int) -> bool:
    """Whether a progress line's move text (... move N slot(s) a-b,c (...) ...) covers slot."""
    match = re.search(r"slot\(s\) (\S+)", move)
    if not match:
        return False
    for text in match.group(1).split(","):
        first, _sep, last = text.partition("-")
        if first.isdigit() and int(first) <= slot <= int(last or first):
            return True
    return False
