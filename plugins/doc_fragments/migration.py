# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options of the modules that migrate slots between masters.
    DOCUMENTATION = r"""
options:
  pipeline:
    description: Keys per C(MIGRATE) call (redis-cli's C(--cluster-pipeline), which defaults to 10).
    type: int
    default: 1000
  timeout:
    description: C(MIGRATE) timeout in milliseconds (redis-cli's C(--cluster-timeout)).
    type: int
    default: 60000
  parallel:
    description:
      - How many moves run at the same time. A master gives slots in one move at a time and never
        gives and receives at once; a master that receives may import from several sources at once.
    type: int
    default: 4
  slot_choice:
    description:
      - Which of a master's slots go when it gives some (not used with
        O(redisops.cluster.redis_cluster_reshard#module:slot_list), which names them).
      - V(contiguous) takes one run of the master's slots in slot order - the run with the fewest keys, where
        breaks in the run count as keys too - so slot maps keep few ranges, as with redis-cli. Slots that
        hold far more keys than the master's typical slot (more than twice the median and more than 32)
        stay out of the run and move only when the others do not suffice.
      - V(fewest_keys) takes the slots with the fewest keys wherever they are. It moves the fewest keys,
        but scatters slot maps into many ranges; every client's C(CLUSTER SLOTS) reply grows with them
        (after one rebalance of 200,000 keys onto a fourth master, from 582 bytes to 662 KB).
    type: str
    choices: [contiguous, fewest_keys]
    default: contiguous
  client_grace:
    description:
      - Seconds at most during which cluster clients learn a master that served no slot when the move started,
        once it has its first slots; meanwhile more slots go over the same way (below), a few every quarter of a
        second, then the moves go to full speed. The grace ends as soon as every client at work has met the new
        master - C(CLIENT LIST) on it shows, for each client host, as many connections at work as on the other
        master where that host has fewest - and after O(client_grace) seconds otherwise. V(0) goes to full speed
        at once. Not used when no client is at work on the nodes (C(CLIENT LIST) shows no connection whose last
        command was a data command, a topology read such as C(CLUSTER SLOTS), or a C(PING)), nor when the targets
        already serve slots.
      - Clients build their map of the cluster from C(CLUSTER SLOTS), which lists no master without slots, so
        such a master is unknown to them. A C(MOVED) redirection to an unknown node is handled (the client adds
        it), but some clients raise on an C(ASK) redirection to one, which a slot being moved answers for new keys
        and keys already moved - redis-py up to at least 8.1 raises C(AttributeError) (redis-py issues
        4015 and 2432), ioredis did before 2.2. So the target's first slots go over without C(ASK), the slots of
        its moves that hold no key and the 64 lightest others. Writes on their source wait meanwhile (C(CLIENT
        PAUSE WRITE); reads go on) while the keys of slots holding at most 1000 of them (4000 keys and 8 MiB per
        hand-over) are copied to the target with C(DUMP) and C(RESTORE-ASKING), the target claims the slots, and
        the source, learning the claim from the cluster bus, drops its own copies (milliseconds on Redis, a few
        hundred on Valkey). A slot that cannot go so (heavier, a user without C(CLIENT PAUSE), C(DUMP) or
        C(PTTL), or a server that cannot drop keys while its writes wait - keyed slots go so on Redis before 7.2
        and Valkey 8.1 and later, as Redis 8.0 aborts there) moves alone, open for a few milliseconds.
      - A client learns the new master through C(MOVED) when it uses one of its slots (or when it reloads
        C(CLUSTER SLOTS)); a slot that holds no key is one no client uses. A client spread over the slots in use
        meets one of 64 after 16384 / (64 x its commands per second) seconds on average, 0.26 s at 1000 commands
        per second; at 20 commands per second, 13 s. A client that uses few keys may need a longer grace.
      - Between 0 and 60.
    type: float
    default: 10
  progress_file:
    description:
      - A file that receives one JSON line per batch of slots moved (C(slots_done), C(slots_total),
        C(keys_moved), C(keys_per_s)), for following a long run (for example under C(async)). While a
        batch holds many keys (a hot slot), a line also comes about once a second, with C(slots_done)
        unchanged and C(keys_moved) growing.
    type: path
notes:
  - Moves start only from a sound cluster (every node agrees on slot owners, every slot is served,
    every master reachable). Slots an interrupted run left open are finished first; anything else
    makes the module refuse and point to M(redisops.cluster.redis_cluster_fix).
  - A node that has yet to learn some slot owners (it names nobody where the others name a master that
    claims the slot itself, as a node does for a moment after it joins) is no reason to refuse; the moves
    start once every node agrees, within O(wait_timeout). A node that names another owner, or an owner
    that no longer claims its slot, is.
  - With slots left open, check mode shows the finishing, then the moves planned from the slot owners
    it leaves. O(expect_state_id) is compared with the state before the finishing, as check mode saw it.
  - A slot moves with C(SETSLOT IMPORTING) on the target and C(MIGRATING) on the source (for many
    slots per round trip), its keys with pipelined C(GETKEYSINSLOT) and variadic C(MIGRATE), then
    C(SETSLOT NODE) on the target first, the source second and every other master last. Clients keep
    working throughout (C(ASK) redirections during the move). A target that serves no slot first gets some
    slots without C(ASK) redirections, then clients get O(client_grace) to learn it while more go over so (see
    there).
"""

    # The migration engine's answer to a key that exists on the target (redis_cluster_node calls it replace_keys).
    BUSY_KEYS = r"""
options:
  replace:
    description:
      - Overwrite a key that exists on the target with a different value. Without it such a key
        stops the run and is named; equal copies are always resolved (sets and hashes are compared
        by content, other types by their C(DUMP) payload).
    type: bool
    default: false
"""
