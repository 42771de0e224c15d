# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults injected into a node while a module moves slots: where (the move's source, its target or a bystander),
when (once the run's progress file reports a seeded share of its slots done) and what (kill -9 then a restart, or
SIGSTOP past the node timeout then SIGCONT), every choice drawn from the trial's seed."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import time

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


@dataclasses.dataclass(frozen=True)
class Trial:
    """One seeded trial: the operation, the fault, whom it hits, and the seed every other choice comes from."""

    op: str  # rebalance, reshard, remove
    fault: str  # kill (kill -9, later restarted) or stop (SIGSTOP past the node timeout, then SIGCONT)
    victim: str  # source, target or bystander of the move in progress at the fault
    seed: int

    @property
    def id(self) -> str:
        return "%s-%s-%s-seed%d" % (self.op, self.fault, self.victim, self.seed)

    def draw(self) -> Draw:
        return Draw.of(self)


@dataclasses.dataclass(frozen=True)
class Draw:
    """The trial's random choices."""

    at_share: float  # the fault comes once this share of the run's slots is done
    down_s: float  # how long the victim stays killed or stopped
    pick: int  # which candidate, wherever the trial picks one (bystander, master, slots)
    amount: float  # how much the operation moves, from 0 to 1 of its range

    @classmethod
    def of(cls, trial: Trial) -> Draw:
        rng = random.Random("%s/%d" % (trial.op, trial.seed))
        at_share = rng.uniform(0.05, 0.7)
        # A stopped node always stays silent past the node timeout; a killed one comes back before it or after.
        down_s = NODE_TIMEOUT_S + rng.uniform(1.0, 2.5) if trial.fault == "stop" else rng.uniform(0.3, 4.5)
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
            with open(os.path.join(node.dir, "redis.log"), errors="replace") as handle:
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
