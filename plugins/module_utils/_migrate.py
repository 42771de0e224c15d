# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Moving the keys of one slot between two nodes with variadic MIGRATE. Private to redisops.cluster.

The slot must be open on the source (MIGRATE only runs locally for an open slot) and the target
must own or import it; the caller's plan sees to both.
"""

from __future__ import annotations

from ._client import ResponseError

DEFAULT_PIPELINE = 1000
DEFAULT_TIMEOUT_MS = 60000


class KeyConflict(Exception):
    """Keys exist on both sides with different values: moving them would overwrite data."""


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
    different = [key for key, mine, other in zip(remaining, ours, theirs) if other is not None and mine != other]
    if different:
        names = ", ".join(key.decode("utf-8", "replace") for key in different[:10])
        raise KeyConflict("slot %d: %d key(s) exist on both nodes with different values (%s%s); set replace: true "
                          "to overwrite the target's copies" % (slot, len(different), names,
                                                                ", ..." if len(different) > 10 else ""))
    source.call(*(base + ["REPLACE"] + auth + ["KEYS"] + remaining))
    return len(keys)
