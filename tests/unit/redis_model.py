# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A pure model of a Redis 7.0 cluster's slot configuration, for testing plans without servers.

Each node has its own view: who owns each slot, the config epochs it has heard of, who replicates
whom, its open (migrating / importing) slots and the keys it holds per slot (counts). Commands
refuse what Redis refuses, with Redis' error text, and change only what Redis changes; gossip is
delivered explicitly, one message at a time, so a test decides when nodes learn what.

Every rule names the function of src/cluster.c (Redis 7.0) it follows, as 7.0.15 (Debian 12's
redis-server) behaves: that release also marks slots whose owner stopped claiming them
(owner_not_claiming_slot, as 7.2 does), which lets any claimant take them whatever its epoch. What the
model leaves out: failure detection (every node is reachable), the rejoin delay after a restart,
node handshakes and FORGET (every node knows every other), Pub/Sub, and replicas' own pings beyond
their role.
"""

from __future__ import annotations

import dataclasses

from ansible_collections.redisops.cluster.plugins.module_utils._slots import SLOT_COUNT, ranges_from_slots


class CommandError(Exception):
    """A command Redis refuses; the message is Redis' error reply."""


@dataclasses.dataclass
class SlotTable:
    """One node's server.cluster->slots (slot -> owner id) with the reverse index gossip compares, and
    owner_not_claiming_slot: slots whose owner here was seen no longer claiming them."""

    owners: dict = dataclasses.field(default_factory=dict)
    by_node: dict = dataclasses.field(default_factory=dict)
    not_claimed: set = dataclasses.field(default_factory=set)
    version: int = 0  # bumped on every change, so a caller can tell whether gossip changed anything

    def owner(self, slot: int):
        return self.owners.get(slot)

    def slots_of(self, node_id: str) -> frozenset:
        return frozenset(self.by_node.get(node_id, ()))

    def unclaimed(self, slot: int) -> bool:
        """isSlotUnclaimed: no owner, or an owner that stopped claiming it."""
        return slot not in self.owners or slot in self.not_claimed

    def assign(self, slot: int, node_id: str) -> None:
        """clusterDelSlot + clusterAddSlot (which clears owner_not_claiming_slot)."""
        self.unassign(slot)
        self.owners[slot] = node_id
        self.by_node.setdefault(node_id, set()).add(slot)
        self.not_claimed.discard(slot)
        self.version += 1

    def unassign(self, slot: int) -> None:
        """clusterDelSlot: clears the owner only; migrating / importing states stay."""
        old = self.owners.pop(slot, None)
        if old is not None:
            self.by_node[old].discard(slot)
            self.version += 1

    def mark_claims(self, node_id: str, claims) -> None:
        """Slots bound to node_id that it claims lose the not-claiming mark; those it does not claim get it."""
        marked = set(self.not_claimed)
        bound = self.slots_of(node_id)
        self.not_claimed.difference_update(bound & claims)
        self.not_claimed.update(bound - claims)
        if marked != self.not_claimed:
            self.version += 1


@dataclasses.dataclass
class RedisNode:
    id: str
    port: int
    config_epoch: int = 0
    current_epoch: int = 0
    table: SlotTable = dataclasses.field(default_factory=SlotTable)
    known_epochs: dict = dataclasses.field(default_factory=dict)  # other node id -> its config epoch, as heard
    masters: dict = dataclasses.field(default_factory=dict)  # node id (itself too) -> its master id, '' for a master
    migrating: dict = dataclasses.field(default_factory=dict)  # slot -> target id
    importing: dict = dataclasses.field(default_factory=dict)  # slot -> source id
    keys: dict = dataclasses.field(default_factory=dict)  # slot -> key count

    @property
    def is_master(self) -> bool:
        return not self.masters[self.id]

    @property
    def own_slots(self) -> frozenset:
        return self.table.slots_of(self.id)

    @property
    def cluster_ok(self) -> bool:
        """clusterUpdateState with cluster-require-full-coverage yes: every slot has an owner in this view
        (no node ever fails in the model)."""
        return len(self.table.owners) == SLOT_COUNT

    def epoch_of(self, node_id: str) -> int:
        """What this node believes node_id's config epoch is; a replica shows its master's."""
        node_id = self.masters.get(node_id) or node_id
        return self.config_epoch if node_id == self.id else self.known_epochs.get(node_id, 0)

    def count(self, slot: int) -> int:
        return self.keys.get(slot, 0)

    def fingerprint(self) -> tuple:
        return (self.config_epoch, self.current_epoch, self.table.version, tuple(sorted(self.known_epochs.items())),
                tuple(sorted(self.masters.items())), tuple(sorted(self.migrating.items())),
                tuple(sorted(self.importing.items())), tuple(sorted(self.keys.items())))


class Cluster:
    """Nodes by id; every command is sent to one node, as a client would."""

    def __init__(self, nodes):
        self.nodes = {node.id: node for node in nodes}

    @classmethod
    def formed(cls, ids, keys=None, first_port: int = 7000) -> Cluster:
        """A settled cluster: slots split in even contiguous runs, epochs 1..n, every view agrees.
        keys: {slot: count}, held by each slot's owner."""
        nodes = [RedisNode(node_id, first_port + index, config_epoch=index + 1, current_epoch=len(ids))
                 for index, node_id in enumerate(ids)]
        for node in nodes:
            node.masters = {other: "" for other in ids}
            node.known_epochs = {other.id: other.config_epoch for other in nodes if other is not node}
            for index, owner in enumerate(ids):
                for slot in range(index * SLOT_COUNT // len(ids), (index + 1) * SLOT_COUNT // len(ids)):
                    node.table.assign(slot, owner)
        cluster = cls(nodes)
        for slot, count in (keys or {}).items():
            owner = cluster.nodes[nodes[0].table.owner(slot)]
            owner.keys[slot] = count
        return cluster

    def total_keys(self) -> int:
        return sum(sum(node.keys.values()) for node in self.nodes.values())

    # --- CLUSTER commands (clusterCommand) ----------------------------------------------------------

    def addslots(self, node_id: str, slots) -> None:
        """ADDSLOTS / ADDSLOTSRANGE: checkSlotAssignmentsOrReply refuses the whole command if any slot has an
        owner in the node's own view (itself included); clusterUpdateSlots then clears importing and claims.
        No epoch change: other views take the claim only where they name nobody, an owner that stopped claiming
        the slot, or an owner with an older epoch."""
        node = self.nodes[node_id]
        for slot in slots:
            if node.table.owner(slot) is not None:
                raise CommandError("Slot %d is already busy" % slot)
        for slot in slots:
            node.importing.pop(slot, None)
            node.table.assign(slot, node_id)

    def delslots(self, node_id: str, slots) -> None:
        """DELSLOTS / DELSLOTSRANGE: local only. The others keep naming the node as the owner, but once its pings
        no longer claim the slot they let any claimant have it. clusterUpdateSlots clears importing too; migrating
        and the keys stay."""
        node = self.nodes[node_id]
        for slot in slots:
            if node.table.owner(slot) is None:
                raise CommandError("Slot %d is already unassigned" % slot)
        for slot in slots:
            node.importing.pop(slot, None)
            node.table.unassign(slot)

    def _setslot_target(self, node: RedisNode, other_id: str, unknown: str) -> None:
        if other_id not in node.masters:
            raise CommandError(unknown % other_id)
        if node.masters[other_id]:
            raise CommandError("Target node is not a master")

    def _require_master(self, node: RedisNode) -> None:
        if not node.is_master:
            raise CommandError("Please use SETSLOT only with masters.")

    def setslot_migrating(self, node_id: str, slot: int, target_id: str) -> None:
        """SETSLOT MIGRATING: only on the owner in its own view (the target may be the node itself)."""
        node = self.nodes[node_id]
        self._require_master(node)
        if node.table.owner(slot) != node_id:
            raise CommandError("I'm not the owner of hash slot %d" % slot)
        self._setslot_target(node, target_id, "I don't know about node %s")
        node.migrating[slot] = target_id

    def setslot_importing(self, node_id: str, slot: int, source_id: str) -> None:
        """SETSLOT IMPORTING: refused on the owner; any other master may import, from any master."""
        node = self.nodes[node_id]
        self._require_master(node)
        if node.table.owner(slot) == node_id:
            raise CommandError("I'm already the owner of hash slot %d" % slot)
        self._setslot_target(node, source_id, "I don't know about node %s")
        node.importing[slot] = source_id

    def setslot_stable(self, node_id: str, slot: int) -> None:
        """SETSLOT STABLE: clears both open states on this node only."""
        node = self.nodes[node_id]
        self._require_master(node)
        node.migrating.pop(slot, None)
        node.importing.pop(slot, None)

    def setslot_node(self, node_id: str, slot: int, owner_id: str) -> None:
        """SETSLOT NODE, in this node's table only. Refused when the node owns the slot, hands it to another and
        still holds keys in it (a non-owner may hand it on and keep stray keys). Without keys a migrating state
        is cleared (with keys it stays). A master that gives away its last slot becomes a replica of the new
        owner (cluster-allow-replica-migration, default yes). Assigning to itself while importing clears the
        import and bumps the config epoch (clusterBumpConfigEpochWithoutConsensus)."""
        node = self.nodes[node_id]
        self._require_master(node)
        self._setslot_target(node, owner_id, "Unknown node %s")
        was_mine = node.table.owner(slot) == node_id
        if was_mine and owner_id != node_id and node.count(slot):
            raise CommandError("Can't assign hashslot %d to a different node while I still hold keys for this "
                               "hash slot." % slot)
        if not node.count(slot):
            node.migrating.pop(slot, None)
        node.table.assign(slot, owner_id)
        if was_mine and owner_id != node_id and not node.own_slots:
            self._become_replica(node, owner_id)
        if owner_id == node_id and slot in node.importing:
            self._bump_epoch(node)
            del node.importing[slot]

    def bumpepoch(self, node_id: str) -> str:
        """CLUSTER BUMPEPOCH: 'BUMPED <epoch>' or 'STILL <epoch>' (no error either way)."""
        node = self.nodes[node_id]
        return ("BUMPED %d" if self._bump_epoch(node) else "STILL %d") % node.config_epoch

    @staticmethod
    def _bump_epoch(node: RedisNode) -> bool:
        """clusterBumpConfigEpochWithoutConsensus: a new epoch unless the node's is nonzero and already the
        greatest it knows of (clusterGetMaxEpoch includes currentEpoch). A tie with another node stays a tie:
        clusterHandleConfigEpochCollision resolves it as gossip flows."""
        greatest = max([node.current_epoch, node.config_epoch] + list(node.known_epochs.values()))
        if node.config_epoch and node.config_epoch == greatest:
            return False
        node.current_epoch += 1
        node.config_epoch = node.current_epoch
        return True

    def _become_replica(self, node: RedisNode, master_id: str) -> None:
        """clusterSetMaster: the node closes every open slot and resyncs from its new master, whose data replaces
        its own: its keys are gone from it (those of slots the master holds come back only as the master's)."""
        node.masters[node.id] = master_id
        node.migrating.clear()
        node.importing.clear()
        node.keys.clear()

    # --- keys (migrateCommand, getNodeByQuery) ------------------------------------------------------------

    @staticmethod
    def _refuses_migrate(node: RedisNode, slot: int) -> str:
        """getNodeByQuery for MIGRATE on the source ('' when accepted): the slot needs an owner in the node's view
        (else 'Hash slot not served'), then cluster_state ok; an open slot (migrating as its owner, or importing:
        no ASKING needed) or an owned one is served here, any other answers MOVED."""
        owner = node.table.owner(slot)
        if owner is None:
            return "CLUSTERDOWN Hash slot not served"
        if not node.cluster_ok:
            return "CLUSTERDOWN The cluster is down"
        opened = (owner == node.id and slot in node.migrating) or slot in node.importing
        return "" if opened or owner == node.id else "MOVED %d" % slot

    @staticmethod
    def _refuses_restore(node: RedisNode, slot: int) -> str:
        """getNodeByQuery for RESTORE-ASKING of a key the target lacks: the same owner and cluster_state checks;
        an owner that is migrating the slot answers ASK, an importing node accepts, an owner accepts, any other
        answers MOVED."""
        owner = node.table.owner(slot)
        if owner is None:
            return "CLUSTERDOWN Hash slot not served"
        if not node.cluster_ok:
            return "CLUSTERDOWN The cluster is down"
        if owner == node.id and slot in node.migrating:
            return "ASK %d" % slot
        return "" if slot in node.importing or owner == node.id else "MOVED %d" % slot

    def migrate(self, source_id: str, target_id: str, slot: int, count: int) -> None:
        """MIGRATE of count keys of slot (migrateCommand): refused by the source or, through its RESTORE-ASKING,
        by the target; the keys move only when both accept."""
        source, target = self.nodes[source_id], self.nodes[target_id]
        if not 0 < count <= source.count(slot):
            raise ValueError("source holds %d key(s) of slot %d" % (source.count(slot), slot))
        refused = self._refuses_migrate(source, slot)
        if refused:
            raise CommandError(refused)
        refused = self._refuses_restore(target, slot)
        if refused:
            raise CommandError("Target instance replied with error: %s" % refused)
        source.keys[slot] -= count
        if not source.keys[slot]:
            del source.keys[slot]
        target.keys[slot] = target.count(slot) + count

    # --- gossip (clusterProcessPacket) ------------------------------------------------------------

    def ping(self, sender_id: str, receiver_id: str) -> None:
        """One PING/PONG from sender, processed by receiver (clusterProcessPacket): epochs, role, slot claims,
        the UPDATE the receiver sends back about a stale claim, and a config epoch collision."""
        sender, receiver = self.nodes[sender_id], self.nodes[receiver_id]
        receiver.current_epoch = max(receiver.current_epoch, sender.current_epoch)
        sender_epoch = sender.epoch_of(sender_id)
        if sender_epoch > receiver.known_epochs.get(sender_id, 0):
            receiver.known_epochs[sender_id] = sender_epoch
        self._learn_role(receiver, sender_id, sender.masters[sender_id])
        if not sender.is_master:
            return
        claims = sender.own_slots
        dirty = receiver.table.slots_of(sender_id) != claims
        if dirty:
            self._update_slots(receiver, sender_id, sender.config_epoch, claims)
            self._send_update(receiver, sender, claims)
        if receiver.is_master and sender.config_epoch == receiver.config_epoch and sender_id > receiver_id:
            # clusterHandleConfigEpochCollision: the node with the smaller id takes a new epoch.
            receiver.current_epoch += 1
            receiver.config_epoch = receiver.current_epoch

    @staticmethod
    def _learn_role(receiver: RedisNode, node_id: str, master_id: str) -> None:
        """A master turned replica loses its slots in the receiver's view (clusterDelNodeSlots)."""
        if master_id and not receiver.masters.get(node_id):
            for slot in receiver.table.slots_of(node_id):
                receiver.table.unassign(slot)
        receiver.masters[node_id] = master_id

    def _send_update(self, receiver: RedisNode, sender: RedisNode, claims) -> None:
        """The receiver names, in an UPDATE, the first owner it knows with a greater epoch for a slot the sender
        claims (unclaimed slots aside); the sender applies that owner's slots (as the receiver sees them) only if
        the epoch is news to it."""
        for slot in sorted(claims):
            owner = receiver.table.owner(slot)
            if owner == sender.id or receiver.table.unclaimed(slot):
                continue
            if receiver.epoch_of(owner) <= sender.config_epoch:
                continue
            reported = receiver.epoch_of(owner)
            if owner != sender.id and sender.known_epochs.get(owner, 0) < reported:
                sender.known_epochs[owner] = reported
                self._learn_role(sender, owner, "")
                self._update_slots(sender, owner, reported, receiver.table.slots_of(owner))
            return

    def _update_slots(self, node: RedisNode, claimer_id: str, claimer_epoch: int, claims) -> None:
        """clusterUpdateSlotsConfigWith (as in 7.0.15, with owner_not_claiming_slot): each claimed slot the node does
        not import is rebound when it is unclaimed in the node's view (no owner, or an owner seen not claiming it)
        or its owner's epoch (as the node knows it) is lower; slots bound to the claimer that it no longer claims
        are marked not claimed. Slots the node (or its master) loses this way: a node left with no slot becomes a
        replica of the claimer; otherwise the keys it held in the lost slots are deleted."""
        if claimer_id == node.id:
            return
        mine = node.masters[node.id] or node.id
        lost_with_keys, lost_mine = [], False
        for slot in sorted(claims):
            owner = node.table.owner(slot)
            if owner == claimer_id or slot in node.importing:
                continue
            if node.table.unclaimed(slot) or node.epoch_of(owner) < claimer_epoch:
                if owner == node.id and node.count(slot):
                    lost_with_keys.append(slot)
                lost_mine = lost_mine or owner == mine
                node.table.assign(slot, claimer_id)
        node.table.mark_claims(claimer_id, frozenset(claims))
        if lost_mine and not node.table.slots_of(mine):
            self._become_replica(node, claimer_id)
        else:
            for slot in lost_with_keys:
                del node.keys[slot]

    def fingerprint(self) -> tuple:
        return tuple(node.fingerprint() for _node_id, node in sorted(self.nodes.items()))

    def gossip_round(self) -> None:
        for sender in sorted(self.nodes):
            for receiver in sorted(self.nodes):
                if sender != receiver:
                    self.ping(sender, receiver)

    def settle(self, max_rounds: int = 50) -> None:
        """Every node pings every other, round after round, until a round changes nothing."""
        for _round in range(max_rounds):
            before = self.fingerprint()
            self.gossip_round()
            if self.fingerprint() == before:
                return
        raise AssertionError("gossip did not settle in %d rounds" % max_rounds)

    # --- replies ------------------------------------------------------------------------------------

    def cluster_nodes(self, node_id: str) -> str:
        """CLUSTER NODES as node_id prints it (clusterGenNodeDescription): open slots only on its own line."""
        viewer = self.nodes[node_id]
        lines = []
        for other_id, other in sorted(self.nodes.items()):
            master = viewer.masters[other_id]
            flags = ("myself," if other_id == node_id else "") + ("slave" if master else "master")
            fields = [other_id, "127.0.0.1:%d@%d" % (other.port, other.port + 10000), flags, master or "-", "0", "0",
                      str(viewer.epoch_of(other_id)), "connected"]
            fields += ["%d" % first if first == last else "%d-%d" % (first, last)
                       for first, last in ranges_from_slots(sorted(viewer.table.slots_of(other_id)))]
            if other_id == node_id:
                fields += ["[%d->-%s]" % item for item in sorted(viewer.migrating.items())]
                fields += ["[%d-<-%s]" % (slot, source) for slot, source in sorted(viewer.importing.items())
                           if slot not in viewer.migrating]
            lines.append(" ".join(fields))
        return "\n".join(lines) + "\n"

    def cluster_info(self, node_id: str) -> str:
        node = self.nodes[node_id]
        fields = (("cluster_state", "ok" if node.cluster_ok else "fail"),
                  ("cluster_slots_assigned", len(node.table.owners)), ("cluster_known_nodes", len(self.nodes)),
                  ("cluster_current_epoch", node.current_epoch), ("cluster_my_epoch", node.epoch_of(node_id)))
        return "".join("%s:%s\r\n" % field for field in fields)

    def info(self, node_id: str) -> str:
        node = self.nodes[node_id]
        keys = sum(node.keys.values())
        role = "role:%s\r\n" % ("master" if node.is_master else "slave")
        return "# Replication\r\n" + role + ("# Keyspace\r\ndb0:keys=%d,expires=0,avg_ttl=0\r\n" % keys if keys else "")
