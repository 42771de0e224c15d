# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Moving the keys of one slot between two nodes with variadic MIGRATE. Private to redisops.cluster.

The slot must be open on the source (MIGRATE only runs locally for an open slot) and the target
must own or import it; the caller's plan sees to both.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import typing

from ._client import SLOT, RedisConnectionError, RedisError, ResponseError, command_count, per_slot
from ._ownership import owner_map
from ._slots import ranges_from_slots, summarize_ranges
from ._topology import parse_cluster_nodes

DEFAULT_PIPELINE = 1000
DEFAULT_TIMEOUT_MS = 60000


class KeyConflict(Exception):
    """Keys exist on both sides with different values: moving them would overwrite data."""


@dataclasses.dataclass(frozen=True)
class Patience:
    """How long a move waits out a node that refuses keys with CLUSTERDOWN (a master that just joined waits out its
    rejoin delay), and hopeless() -> why waiting cannot help ('' while it may), asked about once a second."""

    seconds: float = 60.0
    hopeless: typing.Callable[[], str] = lambda: ""


def migrate_auth_args(options) -> list:
    if options.user and options.password:
        return ["AUTH2", options.user, options.password]
    if options.password:
        return ["AUTH", options.password]
    return []


def move_slot_keys(source, target, target_host: str, target_port: int, slot: int, options,
                   pipeline: int = DEFAULT_PIPELINE, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                   replace: bool = False) -> int:
    """Move every key of slot from source to target (both NodeConnections); the number of keys moved.

    A key that already exists on the target (BUSYKEY) is replaced when both copies are equal (DUMP
    payloads match) or replace is set; otherwise KeyConflict names the keys and nothing more moves.
    """
    moved = 0
    base = ["MIGRATE", target_host, target_port, "", 0, timeout_ms]
    auth = migrate_auth_args(options)
    previous = None
    while True:
        keys = source.call("CLUSTER", "GETKEYSINSLOT", slot, pipeline)
        if not keys:
            return moved
        if keys == previous:
            raise KeyConflict("slot %d: MIGRATE to %s:%d made no progress on %d key(s)"
                              % (slot, target_host, target_port, len(keys)))
        previous = keys
        try:
            source.call(*(base + (["REPLACE"] if replace else []) + auth + ["KEYS"] + list(keys)))
            moved += len(keys)
        except ResponseError as exc:
            if "BUSYKEY" not in str(exc):
                raise
            moved += _resolve_busy_keys(source, target, keys, base, auth, slot)


def _asking(conn, commands) -> list:
    """Replies to commands on keys of an open slot: each behind ASKING, so an importing node answers too."""
    interleaved = []
    for command in commands:
        interleaved += [("ASKING",), command]
    return conn.pipeline(interleaved)[1::2]


def _resolve_busy_keys(source, target, keys, base, auth, slot: int) -> int:
    # MIGRATE moved the keys it could; what is still here collided with a key on the target.
    remaining = [key for key, exists in zip(keys, _asking(source, [("EXISTS", key) for key in keys])) if exists == 1]
    if not remaining:
        return len(keys)
    ours = _asking(source, [("DUMP", key) for key in remaining])
    theirs = _asking(target, [("DUMP", key) for key in remaining])
    for reply in ours + theirs:
        if isinstance(reply, Exception):
            raise reply
    unequal = [key for key, mine, other in zip(remaining, ours, theirs) if other is not None and mine != other]
    different = _differing_values(source, target, unequal) if unequal else []
    if different:
        names = ", ".join(key.decode("utf-8", "replace") for key in different[:10])
        raise KeyConflict("slot %d: %d key(s) exist on both nodes with different values (%s%s); set replace: true "
                          "to overwrite the target's copies" % (slot, len(different), names,
                                                                ", ..." if len(different) > 10 else ""))
    source.call(*(base + ["REPLACE"] + auth + ["KEYS"] + remaining))
    return len(keys)


# A hash table (a set or hash past its compact encoding) is serialized in table order, which differs between two
# copies of the same value built in another order (a RESTORE does that): such copies are compared by content.
_CONTENT = {b"set": "SMEMBERS", b"hash": "HGETALL"}


def _differing_values(source, target, keys) -> list:
    """Of keys whose DUMP payloads differ on source and target, those whose values differ too."""
    kinds = _asking(source, [("TYPE", key) for key in keys])
    comparable = [(key, kind) for key, kind, other in zip(keys, kinds, _asking(target, [("TYPE", key) for key in keys]))
                  if kind == other and kind in _CONTENT]
    reads = [(_CONTENT[kind], key) for key, kind in comparable]
    equal = {key for (key, kind), mine, other in zip(comparable, _asking(source, reads), _asking(target, reads))
             if not isinstance(mine, Exception) and not isinstance(other, Exception)
             and _content(kind, mine) == _content(kind, other)}
    return [key for key in keys if key not in equal]


def _content(kind: bytes, reply) -> frozenset:
    """SMEMBERS' members, or HGETALL's alternating fields and values as pairs."""
    if kind == b"hash":
        return frozenset(zip(reply[0::2], reply[1::2]))
    return frozenset(reply)


# --- many slots between one pair ------------------------------------------------------------------

# Slots opened, emptied and handed over per round trip group; the target tells the cluster once per batch.
SLOT_BATCH = 512
PROGRESS_INTERVAL = 1.0  # seconds between progress lines while one batch's slots are still emptying
RETRY_INTERVAL = 0.1  # seconds between tries of MIGRATEs refused while the cluster is down
LIST_FACTOR = 8  # pages of `pipeline` keys listed per slot and round: a hot slot takes 8x fewer round trips
# A master whose SETSLOT waits for its replicas (Valkey 8 and later) gives them this long per SETSLOT (its default is
# 2 s), under the connections' 10 s command timeout; it answers NOREPLICAS when they took longer and leaves the slot
# as it was (the replicas may have taken it). Such a SETSLOT is sent again, SETSLOT_TRIES times in all.
SETSLOT_WAIT_MS = 5000
SETSLOT_TRIES = 3
# Connections over which such a master's SETSLOTs of one pipeline are dealt out, slot by slot. It asks its replicas
# once per event loop for every SETSLOT waiting then, and saves its nodes.conf once per loop, so a SETSLOT per
# connection shares each round (measured on Valkey 8.1.1 with one replica: 575 SETSLOT per second on one
# connection, 4,914 on 16, 8,952 on 32).
SETSLOT_LANES = 32


def _check(replies, what: str, tolerate=lambda error: False) -> None:
    errors = [reply for reply in replies if isinstance(reply, Exception) and not tolerate(reply)]
    if errors:
        raise errors[0].__class__("%s: %s" % (what, errors[0]))


def cluster_down(error) -> bool:
    """A refusal that passes once the cluster is whole again: a node answers CLUSTERDOWN while it misses a slot's
    owner, and a master that just joined until its rejoin delay is over."""
    text = str(error)
    return "CLUSTERDOWN" in text or "cluster is down" in text or text.startswith("TRYAGAIN")


def _unconfirmed(reply) -> bool:
    return isinstance(reply, ResponseError) and str(reply).startswith("NOREPLICAS")


def _wait(conn) -> tuple:
    """The arguments that end a SETSLOT to conn: how long it may wait for the node's replicas (Valkey 8 and later)."""
    return ("TIMEOUT", SETSLOT_WAIT_MS) if conn.setslot_waits_for_replicas() else ()


def _confirmed(conn, slots, build, replies) -> list:
    """replies to build(slots) (one SETSLOT per slot) once the slots refused with NOREPLICAS were sent again, up to
    SETSLOT_TRIES times in all: the master applied none of them, and each applies the same state twice alike."""
    replies = list(replies)
    for _try in range(SETSLOT_TRIES - 1):
        again = [index for index, reply in enumerate(replies) if _unconfirmed(reply)]
        if not again:
            break
        for index, reply in zip(again, conn.pipeline(build([slots[index] for index in again]))):
            replies[index] = reply
    return replies


def _deal(conn, wait: tuple, parts) -> tuple:
    """Send parts, (slots, build) pairs, as one pipeline: build(slots) gives every slot as many commands, slot after
    slot. On a node whose SETSLOT waits for its replicas (wait), the slots are dealt out over up to SETSLOT_LANES of
    its connections, a slot's commands of every part on one of them and in the parts' order. (the lane of each
    slot, the number of replies due on each lane), for _collect."""
    everything = sorted({slot for slots, _build in parts for slot in slots})
    count = max(1, min(SETSLOT_LANES, len(everything))) if wait else 1
    lane_of = {slot: position % count for position, slot in enumerate(everything)}
    due = []
    for index, lane in enumerate(conn.lanes(count)):
        due.append(lane.send([command for slots, build in parts
                              for command in build([slot for slot in slots if lane_of[slot] == index])]))
    return lane_of, due


def _collect(conn, due) -> list:
    """The replies due on each of conn's lanes (_deal); on a failure every lane is closed, none holding replies that
    a later call would take for its own."""
    try:
        return [lane.receive(count) for lane, count in zip(conn.lanes(len(due)), due)]
    except RedisError:
        conn.close()
        raise


def _spread(conn, wait: tuple, parts) -> list:
    """The replies to parts (_deal), in the order one pipeline of their commands on conn would give them."""
    lane_of, due = _deal(conn, wait, parts)
    received = _collect(conn, due)
    if len(received) == 1:
        return received[0]
    read = [0] * len(due)
    replies = []
    for slots, build in parts:
        each = command_count(build(slots[:1]))
        for slot in slots:
            lane = lane_of[slot]
            replies.extend(received[lane][read[lane]:read[lane] + each])
            read[lane] += each
    return replies


def _turned_replica(error) -> bool:
    """A master that gave away its last slot turns into a replica (cluster-allow-replica-migration) and refuses
    SETSLOT from then on; it learns the new owners from its master. A SETSLOT that was waiting for the replicas
    then (Valkey 8 and later) is answered UNBLOCKED, and the connection closed after it."""
    text = str(error)
    return "only with masters" in text.lower() or text.startswith("UNBLOCKED")


def move_slots(source, target, others, pair, slots, options, pipeline: int = DEFAULT_PIPELINE,
               timeout_ms: int = DEFAULT_TIMEOUT_MS, replace: bool = False, progress=None,
               patience: Patience = Patience()) -> int:
    """Move slots (and their keys) from source to target; the number of keys moved.

    pair: (source id, target id, target host, target port). others: connections to every other master.
    Per batch of slots: IMPORTING on the target, MIGRATING on the source, the keys with pipelined GETKEYSINSLOT
    and variadic MIGRATE, then SETSLOT NODE on the target first, the source second, every other master last (after
    STABLE there; their replies are read at the end). Slots may already be open between the pair, with or without
    keys moved; keys another master holds in them must be moved before. Each hand-over pipeline also opens the
    next batch on its node, so a batch costs two round trips besides its MIGRATEs. MIGRATEs refused while the
    cluster is down are tried again, up to patience.seconds per outage, unless patience.hopeless() says waiting
    cannot help. A failure leaves the open slots for the next run to finish.
    """
    source_id, target_id, host, port = pair
    mover = _SlotMover(source, target, (host, port), options, pipeline, timeout_ms, replace, patience, progress)
    page = mover.page
    batches = [slots[start:start + SLOT_BATCH] for start in range(0, len(slots), SLOT_BATCH)]
    if not batches:
        return 0
    # Asked before any reply is pending on the connections.
    source_wait, target_wait, others_wait = _wait(source), _wait(target), [_wait(conn) for conn in others]
    _open_on_target(target, batches[0], source_id, target_wait)
    listed = _opened_on_source(source, batches[0], target_id, source_wait,
                               _spread(source, source_wait, _opening_on_source(batches[0], target_id, source_wait, page)))
    told: list = [[] for _conn in others]
    for index, batch in enumerate(batches):
        mover.empty(batch, listed)
        following = batches[index + 1] if index + 1 < len(batches) else []
        _hand_over_on_target(target, batch, target_id, target_wait, (following, source_id))
        listed = _hand_over_on_source(source, batch, target_id, source_wait, following, page)
        # The other masters are told now and answer while the next batch moves: a master that is itself
        # giving slots away answers only between its MIGRATEs.
        for position, conn in enumerate(others):
            wait = others_wait[position]
            due = _deal(conn, wait, [(batch, lambda slots, wait=wait: _settled_elsewhere(slots, target_id, wait))])[1]
            told[position] = [sum(counts) for counts in itertools.zip_longest(told[position], due, fillvalue=0)]
        mover.batch_done(len(batch))
    for conn, due in zip(others, told):
        # Another move may have drained a master told here, which then refused.
        _check([reply for replies in _collect(conn, due) for reply in replies],
               "telling %s:%d the new owner" % (conn.host, conn.port), _turned_replica)
    return mover.moved


# Writes on the source wait this long at most while slots are handed over without opening them; the hand-over goes
# ahead only when the pause has at least HAND_OVER_MARGIN of it left once the keys to copy are read, and the pause is
# renewed while the source has not yet learnt the target's claim.
HAND_OVER_PAUSE_MS = 2000
HAND_OVER_MARGIN = 0.75
# A slot goes over without opening it when it holds at most QUIET_SLOT_KEYS keys, up to QUIET_KEYS keys and
# QUIET_BYTES of their DUMP payloads per hand-over: that is what writes on the source wait for.
QUIET_SLOT_KEYS = 1000
QUIET_KEYS = 4000
QUIET_BYTES = 8 << 20
# Seconds at most that a source may take to learn the target's claim (the cluster bus takes milliseconds), and
# between two looks.
QUIET_CLAIM_WAIT = 10.0
QUIET_LOOK = 0.005
# Slots weighed per hand-over while clients learn a new master (hand_first_slots).
QUIET_BATCH = 16
# DUMP of an empty string in RDB version 9 (Redis 5 on; later servers restore older versions): object type 0, length
# 0, the version (2 bytes) and the CRC-64 (Jones) of the bytes before it. purge_keys restores it only to delete it.
PLACEHOLDER_DUMP = b"\x00\x00\x09\x00\x8d\x69\x0d\x8c\x5b\xf9\xc1\x6b"


def hand_first_slots(source, target, others, pair, direct, keyed, options, pipeline: int = DEFAULT_PIPELINE,
                     timeout_ms: int = DEFAULT_TIMEOUT_MS, replace: bool = False, progress=None,
                     patience: Patience = Patience(), then=(), until: float = 0.0) -> tuple:
    """Give a target that serves no slot its first slots without an ASK redirection; (keys moved, slots moved).

    Clients build their view from CLUSTER SLOTS, which lists no master without slots, and some raise on an ASK
    towards a node they do not know (redis-py through 8.1) while they follow a MOVED. direct (slots that held no
    key) and keyed (the lightest others) go over without opening them (hand_over_quietly); one that cannot (it
    grew, the source refuses the pause or DUMP, or its server cannot) moves alone, so an ASK can only meet a client
    that uses that very slot for those few milliseconds. Clients meet the target through MOVED only on slots they
    use, which the empty ones are not. Then the slots of `then` go over the same way, QUIET_BATCH weighed every
    LOOK_EVERY (or one at a time, one after the other, where none can), until the monotonic clock reaches `until`
    or every client at work on the other masters is seen on the target (clients_yet_to_learn): each slot the target
    gains makes a client meet it sooner.
    """
    def hand(slots, every: bool) -> tuple:
        """(keys, slots handed over, how many of them moved alone): those that can go without opening them, then
        the others one at a time (every), or the first of them when none could (not every)."""
        handed, keys = hand_over_quietly(source, target, others, pair, slots)
        alone = [slot for slot in slots if slot not in set(handed)]
        if not every:
            alone = alone[:0 if handed else 1]
        for slot in alone:
            keys += move_slots(source, target, others, pair, [slot], options, pipeline, timeout_ms, replace,
                               patience=patience)
            handed.append(slot)
        return keys, handed, len(alone)

    def report(handed) -> None:
        if handed and progress is not None:
            progress(len(handed), moved)

    moved, slots, _alone = hand(sorted(set(direct) | set(keyed)), every=True)
    report(slots)
    rest = [slot for slot in then if slot not in set(slots)]
    while rest and time.monotonic() < until and clients_yet_to_learn(target, [source] + list(others)):
        look = time.monotonic() + LOOK_EVERY
        keys, handed, alone = hand(rest[:QUIET_BATCH], every=False)
        moved, slots = moved + keys, slots + handed
        report(handed)
        rest = [slot for slot in rest if slot not in set(handed)]
        if not alone:
            # A pause for every hand-over: the source's writes wait for each.
            time.sleep(max(0.0, min(look, until) - time.monotonic()))
    return moved, slots


def hand_over_quietly(source, target, others, pair, slots) -> tuple:
    """Hand over the slots that hold few keys without MIGRATING/IMPORTING on the source; (slots handed, keys).

    Writes on the source are paused (CLIENT PAUSE WRITE; reads go on, and keys neither expire nor are evicted)
    while its keys per slot are counted, the keys of the light slots (QUIET_SLOT_KEYS, QUIET_KEYS, QUIET_BYTES) are
    copied to the target (DUMP, PTTL, then RESTORE-ASKING while the target imports the slot) and the target claims
    them: through IMPORTING then SETSLOT NODE its config epoch is bumped and its claim wins. A source never gives
    up a slot it holds keys of on SETSLOT; it learns the claim from the target's gossip and, as Redis does for a slot
    lost to a newer claim, deletes its own copies; the pause lasts until it has (QUIET_CLAIM_WAIT), so no write
    reaches a copy that is about to go. A source that drops them in memory only (Redis before 7.2) then has its
    replicas and AOF drop them too (_purge_dropped). Then the source is told, and every other master. Until the
    source learns the claim, a client there is still served: the values are the same on both sides. Nothing is
    handed over when the source refuses the pause (Redis before 6.2, or the user's ACL); a source that refuses DUMP
    or PTTL, a target that refuses a copy, a server that cannot drop keys while its writes wait
    (drops_lost_keys_while_paused), and one that would need the purge where the user may not run DEL hand over
    empty slots only.
    """
    source_id, target_id = pair[0], pair[1]
    source_wait, target_wait = _wait(source), _wait(target)
    slot_keys = QUIET_SLOT_KEYS if source.drops_lost_keys_while_paused() and (
        source.passes_on_lost_keys() or _may_delete(source)) else 0
    started = time.monotonic()
    replies = source.pipeline([("CLIENT", "PAUSE", HAND_OVER_PAUSE_MS, "WRITE"),
                               per_slot(slots, ("CLUSTER", "COUNTKEYSINSLOT", SLOT))])
    if isinstance(replies[0], ResponseError):
        return [], 0
    try:
        _check(replies[1:], "counting keys on the source")
        chosen = _light(dict(zip(slots, replies[1:])), slot_keys)
        copies = _copies(source, [slot for slot, keys in chosen.items() if keys])
        if copies is None:
            chosen = {slot: 0 for slot, keys in chosen.items() if not keys}
        if not chosen or time.monotonic() - started > (1 - HAND_OVER_MARGIN) * HAND_OVER_PAUSE_MS / 1000.0:
            return [], 0
        handed = sorted(chosen)
        _open_on_target(target, handed, source_id, target_wait)
        if copies and not _restored(target, copies):
            handed = [slot for slot in handed if not chosen[slot]]
            if not handed:
                return [], 0
        _hand_over_on_target(target, handed, target_id, target_wait, ([], source_id))
        _until_learnt(source, handed, [slot for slot in handed if chosen[slot]], target_id, started)
    finally:
        source.call("CLIENT", "UNPAUSE")
    keyed = {slot: copies[slot] for slot in handed if chosen[slot]}
    if keyed and not source.passes_on_lost_keys():
        _purge_dropped(source, target_id, keyed)
    # The source already names the target: this SETSLOT only confirms it. A source whose SETSLOT waits for its
    # replicas (Valkey 8) cannot take it while its writes wait, as it would have to replicate it.
    _hand_over_on_source(source, handed, target_id, source_wait, [], 0)
    for conn in others:
        owned = _owning(target_id, _wait(conn))
        replies = _confirmed(conn, handed, owned, _spread(conn, _wait(conn), [(handed, owned)]))
        _check(replies, "telling %s:%d the new owner" % (conn.host, conn.port), _turned_replica)
    return handed, sum(chosen[slot] for slot in handed)


def _may_delete(conn) -> bool:
    """Whether the login user may run DEL on the node: queued in a transaction, which refuses it at once if the user
    may not (the transaction is then aborted); otherwise it deletes a key of the collection's own name, if any."""
    queued = conn.pipeline([("MULTI",), ("DEL", "redisops:permission-probe"), ("EXEC",)])[1]
    return not (isinstance(queued, ResponseError) and "NOPERM" in str(queued))


def _purge_dropped(source, target_id: str, copies: dict) -> None:
    """Make the source's replicas and AOF drop the keys it dropped in memory only when it learnt the target's claim
    (passes_on_lost_keys). A source that lost its last slot is a replica by now and resynchronises from the target,
    its data replaced."""
    if not _is_replica(source):
        purge_keys(source, target_id, {slot: [key for key, _ttl, _payload in held] for slot, held in copies.items()})


def purge_keys(master, owner_id: str, keys: dict) -> None:
    """Delete keys ({slot: names}) of slots the master does not serve from its replicas and AOF, whether or not the
    master holds them: while the master imports each slot from its owner, each key is restored behind ASKING and
    deleted again, two writes that reach both (a DEL of a missing key would reach neither). Clients meet MOVED for
    those slots meanwhile, as before."""
    slots = sorted(slot for slot, names in keys.items() if names)
    if not slots:
        return
    _check(master.pipeline([per_slot(slots, ("CLUSTER", "SETSLOT", SLOT, "IMPORTING", owner_id))]),
           "opening slots on %s:%d to purge its replicas' copies" % (master.host, master.port))
    try:
        replies = master.pipeline([command for slot in slots for key in keys[slot]
                                   for command in (("RESTORE-ASKING", key, 0, PLACEHOLDER_DUMP, "REPLACE"),
                                                   ("ASKING",), ("DEL", key))])
    finally:
        closed = master.pipeline([per_slot(slots, ("CLUSTER", "SETSLOT", SLOT, "STABLE"))])
    _check(replies, "purging the copies %s:%d's replicas and AOF keep of slots it does not serve"
           % (master.host, master.port))
    _check(closed, "closing slots on %s:%d after the purge" % (master.host, master.port))


def keys_in_slots(conn, slots) -> dict:
    """{slot: key names} of the node's keys in those slots that hold any (a replica's too: CLUSTER GETKEYSINSLOT
    reads its own data)."""
    counts = conn.pipeline([per_slot(slots, ("CLUSTER", "COUNTKEYSINSLOT", SLOT))])
    _check(counts, "counting keys on %s:%d" % (conn.host, conn.port))
    held = [(slot, count) for slot, count in zip(slots, counts) if count]
    listed = conn.pipeline([("CLUSTER", "GETKEYSINSLOT", slot, count) for slot, count in held])
    _check(listed, "listing keys on %s:%d" % (conn.host, conn.port))
    return {slot: names for (slot, _count), names in zip(held, listed) if names}


def _light(counts: dict, slot_keys: int) -> dict:
    """Of {slot: keys}, the empty slots and the lightest others within slot_keys keys each and QUIET_KEYS in all."""
    chosen, total = {}, 0
    for slot, keys in sorted(counts.items(), key=lambda item: (item[1], item[0])):
        if keys > slot_keys or total + keys > QUIET_KEYS:
            break
        chosen[slot] = keys
        total += keys
    return chosen


def _copies(source, slots) -> dict | None:
    """{slot: [(key, ttl in ms or 0, DUMP payload)]} of the slots' keys on the source; None when the source refuses
    a read or the payloads exceed QUIET_BYTES. A key that expired meanwhile has no copy: the source drops it too."""
    if not slots:
        return {}
    listed = source.pipeline([per_slot(slots, ("CLUSTER", "GETKEYSINSLOT", SLOT, QUIET_SLOT_KEYS))])
    if any(isinstance(reply, Exception) for reply in listed):
        return None
    keys = [(slot, key) for slot, names in zip(slots, listed) for key in names]
    read = source.pipeline([command for _slot, key in keys for command in (("DUMP", key), ("PTTL", key))])
    if any(isinstance(reply, Exception) for reply in read) or sum(len(payload or b"") for payload in read[::2]) > QUIET_BYTES:
        return None
    copies: dict = {slot: [] for slot in slots}
    for (slot, key), payload, ttl in zip(keys, read[::2], read[1::2]):
        if payload is not None and ttl != -2:
            copies[slot].append((key, max(ttl, 0), payload))
    return copies


def _restored(target, copies: dict) -> bool:
    """Whether the target took every copy (RESTORE-ASKING ... REPLACE into the slots it imports); when it did not,
    the copies it took are deleted and their slots closed there again."""
    keys = [(slot, key) for slot, held in copies.items() for key, _ttl, _payload in held]
    replies = target.pipeline([("RESTORE-ASKING", key, ttl, payload, "REPLACE")
                               for held in copies.values() for key, ttl, payload in held])
    if not any(isinstance(reply, Exception) for reply in replies):
        return True
    _check(_asking(target, [("DEL", key) for _slot, key in keys]), "deleting copies on the target")
    _check(target.pipeline([per_slot(sorted(copies), ("CLUSTER", "SETSLOT", SLOT, "STABLE"))]),
           "closing slots on the target")
    return False


def _until_learnt(source, slots, keyed, target_id: str, started: float) -> None:
    """Back once the source names the target the owner of slots and holds no key of those of them that were keyed
    (it learnt the target's claim from the cluster bus), its write pause renewed before it runs out; raises after
    QUIET_CLAIM_WAIT seconds."""
    deadline = time.monotonic() + QUIET_CLAIM_WAIT
    pause_ends = started + HAND_OVER_PAUSE_MS / 1000.0
    while True:
        replies = source.pipeline([("CLUSTER", "NODES")] + [per_slot(keyed, ("CLUSTER", "COUNTKEYSINSLOT", SLOT))])
        _check(replies, "reading the source's view")
        owners = owner_map(parse_cluster_nodes(replies[0].decode("utf-8", "replace")))
        left = sorted({slot for slot in slots if owners.get(slot) != target_id}
                      | {slot for slot, keys in zip(keyed, replies[1:]) if keys})
        if not left:
            return
        now = time.monotonic()
        if now > deadline:
            raise ResponseError("%s:%d has not learnt in %.0f s that %s claimed slot(s) %s (the cluster bus does not "
                                "reach it); run redis_cluster_fix once it does"
                                % (source.host, source.port, QUIET_CLAIM_WAIT, target_id,
                                   summarize_ranges(ranges_from_slots(left))))
        if now > pause_ends - HAND_OVER_MARGIN * HAND_OVER_PAUSE_MS / 1000.0 / 2:
            source.call("CLIENT", "PAUSE", HAND_OVER_PAUSE_MS, "WRITE")
            pause_ends = time.monotonic() + HAND_OVER_PAUSE_MS / 1000.0
        time.sleep(QUIET_LOOK)


# Last commands (CLIENT LIST cmd=) of connections that are not a cluster client at work: tools that read or manage
# the nodes, the module's own connections, and the MIGRATE connections a source keeps open to its targets. Anything
# else - a data command, a topology read (CLUSTER SLOTS, SHARDS, NODES), a PING - counts as a client at work.
NOT_AT_WORK = frozenset((
    "NULL", "auth", "hello", "select", "info", "role", "dbsize", "migrate", "restore-asking", "client|list",
    "client|id", "client|setname", "client|getname", "client|info", "client|pause", "client|unpause", "config|get",
    "config|set", "config|resetstat", "command|count", "command|docs", "command|info", "cluster|info",
    "cluster|myid", "cluster|countkeysinslot", "cluster|getkeysinslot", "cluster|setslot", "cluster|meet",
    "cluster|addslots", "cluster|addslotsrange", "cluster|delslots", "cluster|delslotsrange", "cluster|bumpepoch",
    "cluster|set-config-epoch", "cluster|forget", "cluster|replicate", "cluster|failover", "cluster|reset",
))


def _clients_by_host(conn) -> dict | None:
    """Connections of clients at work (NOT_AT_WORK) on this node, per client host (CLIENT LIST TYPE normal); None
    when not allowed to look (ACL)."""
    listing = conn.pipeline([("CLIENT", "LIST", "TYPE", "normal")])[0]
    if isinstance(listing, Exception):
        return None
    hosts: dict = {}
    for line in listing.decode("utf-8", "replace").splitlines():
        fields = dict(field.partition("=")[::2] for field in line.split())
        if fields.get("cmd", "NULL") not in NOT_AT_WORK:
            host = fields.get("addr", "").rpartition(":")[0]
            hosts[host] = hosts.get(host, 0) + 1
    return hosts


def clients_at_work(conns) -> int:
    """How many connections to these nodes belong to clients at work (NOT_AT_WORK); 1 when not allowed to look."""
    count = 0
    for conn in conns:
        hosts = _clients_by_host(conn)
        if hosts is None:
            return 1
        count += sum(hosts.values())
    return count


# Seconds between two looks at whether clients have met a new master.
LOOK_EVERY = 0.25


def clients_yet_to_learn(target, masters) -> int:
    """Connections that clients at work on masters still lack on target; 1 when not allowed to look.

    A cluster client holds a connection to every master it sends commands to, and opens one to a master it did not
    know only once it has met it through MOVED. So each client host needs on the target at least as many connections
    at work as on the master (among those it uses) where it has fewest; a host short of that still has a client that
    does not know the target.
    """
    on_target = _clients_by_host(target)
    elsewhere = [_clients_by_host(conn) for conn in masters]
    if on_target is None or any(hosts is None for hosts in elsewhere):
        return 1
    needed: dict = {}
    for hosts in elsewhere:
        for host, count in hosts.items():
            needed[host] = min(needed.get(host, count), count)
    return sum(max(0, count - on_target.get(host, 0)) for host, count in needed.items())


# Each returns a list that adds to a pipeline's commands.

def _importing(batch, source_id: str, wait: tuple = ()) -> list:
    return [per_slot(batch, ("CLUSTER", "SETSLOT", SLOT, "IMPORTING", source_id) + wait)]


def _migrating(batch, target_id: str, wait: tuple = ()) -> list:
    return [per_slot(batch, ("CLUSTER", "SETSLOT", SLOT, "MIGRATING", target_id) + wait)]


def _listing(batch, page: int) -> list:
    return [per_slot(batch, ("CLUSTER", "GETKEYSINSLOT", SLOT, page))]


def _owned_by(batch, target_id: str, wait: tuple = ()) -> list:
    return [per_slot(batch, ("CLUSTER", "SETSLOT", SLOT, "NODE", target_id) + wait)]


def _owning(target_id: str, wait: tuple):
    """SETSLOT NODE for the slots it is given (a build for _spread and _confirmed)."""
    return lambda slots: _owned_by(slots, target_id, wait)


def _settled_elsewhere(batch, target_id: str, wait: tuple = ()) -> list:
    """For a master that neither gives nor takes the batch: STABLE, then the new owner. A slot left open towards
    it by an earlier move (it imports the slot from the source) stays open there after SETSLOT NODE alone."""
    return [per_slot(batch, ("CLUSTER", "SETSLOT", SLOT, "STABLE") + wait, ("CLUSTER", "SETSLOT", SLOT, "NODE", target_id) + wait)]


def _opening_on_target(batch, source_id: str, wait: tuple) -> list:
    """IMPORTING for the batch (parts for _spread)."""
    return [(batch, lambda slots: _importing(slots, source_id, wait))]


def _opening_on_source(batch, target_id: str, wait: tuple, page: int) -> list:
    """MIGRATING for the batch, then its first page of keys per slot (parts for _spread)."""
    return [(batch, lambda slots: _migrating(slots, target_id, wait)), (batch, lambda slots: _listing(slots, page))]


def _open_on_target(target, batch, source_id: str, wait: tuple) -> None:
    """IMPORTING for the batch on the target."""
    _opened_on_target(target, batch, source_id, wait, _spread(target, wait, _opening_on_target(batch, source_id, wait)))


def _opened_on_target(target, batch, source_id: str, wait: tuple, replies) -> None:
    """Checks the replies to IMPORTING for the batch on the target."""
    replies = _confirmed(target, batch, lambda slots: _importing(slots, source_id, wait), replies)
    _check(replies, "opening slots on the target")


def _opened_on_source(source, batch, target_id: str, wait: tuple, replies) -> list:
    """The keys listed per slot, from a pipeline of MIGRATING then GETKEYSINSLOT for the batch on the source."""
    count = len(batch)
    opened = _confirmed(source, batch, lambda slots: _migrating(slots, target_id, wait), replies[:count])
    _check(opened, "opening slots on the source")
    _check(replies[count:], "listing keys")
    return replies[count:]


class _SlotMover:
    """Empties open slots of one source into one target, in rounds: one pipeline of MIGRATEs of `pipeline` listed
    keys each, behind which the slots that may hold more keys (a full page was listed) are listed again."""

    def __init__(self, source, target, target_address, options, pipeline: int, timeout_ms: int, replace: bool,
                 patience: Patience, progress=None):
        self.source, self.target, self.target_address = source, target, target_address
        self.options, self.pipeline, self.timeout_ms, self.replace = options, pipeline, timeout_ms, replace
        self.base = (["MIGRATE", target_address[0], target_address[1], "", 0, timeout_ms]
                     + (["REPLACE"] if replace else []) + migrate_auth_args(options))
        self.page = pipeline * LIST_FACTOR
        self.patience = patience
        self._down_since = None
        self._asked = 0.0
        self.progress = progress
        self.moved = 0  # keys, over every call
        self._reported = time.monotonic()

    def empty(self, slots, listed) -> None:
        """MIGRATE every key of slots, starting from their listed keys, counting them in self.moved."""
        pending = list(slots)
        while True:
            work = [(slot, keys[start:start + self.pipeline]) for slot, keys in zip(pending, listed)
                    for start in range(0, len(keys), self.pipeline)]
            if not work:
                return
            # Only slots that may still hold keys (a full page came back) need another round.
            again = [slot for slot, keys in zip(pending, listed) if len(keys) >= self.page]
            replies = self.source.pipeline([self.base + ["KEYS"] + list(keys) for _slot, keys in work]
                                           + _listing(again, self.page))
            busy, down = set(), set()
            for (slot, keys), reply in zip(work, replies):
                if isinstance(reply, ResponseError) and "BUSYKEY" in str(reply):
                    busy.add(slot)
                elif isinstance(reply, Exception) and cluster_down(reply) and self._still_waiting():
                    down.add(slot)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    self.moved += len(keys)
            if not down:
                self._down_since = None
            self._report()
            for slot in sorted(busy):
                self.moved += move_slot_keys(self.source, self.target, *self.target_address, slot, self.options,
                                             self.pipeline, self.timeout_ms, self.replace)
            relisted = replies[len(work):]
            _check(relisted, "listing keys")
            kept = [(slot, keys) for slot, keys in zip(again, relisted) if slot not in busy | down]
            pending, listed = [slot for slot, _keys in kept], [keys for _slot, keys in kept]
            if down:
                # MIGRATE kept every key the target refused; list the slots afresh once the outage may be over.
                time.sleep(RETRY_INTERVAL)
                retried = sorted(down)
                relisted = self.source.pipeline(_listing(retried, self.page))
                _check(relisted, "listing keys")
                pending, listed = pending + retried, listed + relisted

    def batch_done(self, slots: int) -> None:
        """A progress line for a batch of slots handed over."""
        if self.progress is not None:
            self._reported = time.monotonic()
            self.progress(slots, self.moved)

    def _report(self) -> None:
        """A progress line with no slot done, at most every PROGRESS_INTERVAL: a hot slot can take minutes."""
        now = time.monotonic()
        if self.progress is not None and now - self._reported >= PROGRESS_INTERVAL:
            self._reported = now
            self.progress(0, self.moved)

    def _still_waiting(self) -> bool:
        """Whether a cluster-down refusal is still worth waiting out (within patience of the first one); raises when
        the patience's hopeless() names a reason waiting cannot help."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._asked >= 1.0:
            self._asked = now
            reason = self.patience.hopeless()
            if reason:
                raise ResponseError(reason)
        return now - self._down_since <= self.patience.seconds


def _hand_over_on_target(target, batch, target_id: str, wait: tuple, following) -> None:
    """SETSLOT NODE for the batch on the target, as one transaction that bumps its epoch and tells the cluster once.

    SETSLOT NODE on an importing slot bumps the config epoch and broadcasts a PONG to every node, and every
    receiver re-reads its whole slot table for each one: per slot, that storm costs more than the MIGRATEs.
    STABLE first makes SETSLOT NODE a plain assignment; the batch's last slot keeps the importing path, so the
    bump and one broadcast carrying the whole batch follow. MULTI/EXEC keeps any client from seeing a slot
    between STABLE and NODE (neither importing nor owned). A target whose SETSLOT waits for its replicas (Valkey
    8 and later) may not take it inside MULTI: there each slot takes SETSLOT NODE alone, as redis-cli does, dealt
    out over the target's lanes (_deal), and the slots its replicas did not confirm in time are sent again
    (_confirmed).
    following: (the next batch, the source's id), opened on the target in the same pipeline.
    """
    following_slots, source_id = following
    opening = _opening_on_target(following_slots, source_id, wait)
    if target.setslot_waits_for_replicas():
        owned = _owning(target_id, wait)
        replies = _spread(target, wait, [(batch, owned)] + opening)
        handed, count = _confirmed(target, batch, owned, replies[:len(batch)]), len(batch)
    else:
        commands = [("MULTI",), per_slot(batch[:-1], ("CLUSTER", "SETSLOT", SLOT, "STABLE"),
                                         ("CLUSTER", "SETSLOT", SLOT, "NODE", target_id)),
                    ("CLUSTER", "SETSLOT", batch[-1], "NODE", target_id), ("EXEC",)]
        count = command_count(commands)
        replies = target.pipeline(commands + [command for slots, build in opening for command in build(slots)])
        handed = replies[:count]
        if isinstance(handed[-1], list):
            # EXEC's reply holds the SETSLOT replies.
            handed = handed[:-1] + handed[-1]
    _check(handed, "handing slots to the target")
    _opened_on_target(target, following_slots, source_id, wait, replies[count:])


def _is_replica(conn) -> bool:
    """Whether the node, asked on a new connection, is a replica now."""
    conn.close()
    return conn.call("ROLE")[0] == b"slave"


def _hand_over_on_source(source, batch, target_id: str, wait: tuple, following, page: int) -> list:
    """SETSLOT NODE for the batch on the source, then the following batch's MIGRATING and GETKEYSINSLOT (pages of
    `page` keys); the keys listed for the following batch."""
    owned = _owning(target_id, wait)
    try:
        replies = _spread(source, wait, [(batch, owned)] + _opening_on_source(following, target_id, wait, page))
    except RedisConnectionError:
        # Only after the batch that took its last slot can the source have turned into a replica meanwhile.
        if following or not _is_replica(source):
            raise
        return []
    handed = _confirmed(source, batch, owned, replies[:len(batch)])
    # After its last slot the source may already be the target's replica.
    _check(handed, "handing slots over on the source", _turned_replica)
    return _opened_on_source(source, following, target_id, wait, replies[len(batch):])
