# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of redis_cluster_node: add, remove and replace a node. Private to redisops.cluster.

observe -> refuse -> decide the steps (_membership, and the moves through _moves.run_moves when slots move) ->
report them (check mode) or carry them out -> observe again. Every decision comes from the live state, so a rerun
after an interruption goes on from where the last run stopped.
"""

from __future__ import annotations

from ._change import apply_plan
from ._client import count_keys, observe_cluster, observe_node, require_usable
from ._membership import (
    attach_steps, best_master, converged_step, drain_weights, find_node, meet_steps, refuse_removal, refuse_short_memory,
    no_failover_step, refuse_unfit, rehome_steps, removal_steps, replacement_steps, serving_masters,
)
from ._module import ModuleFailure, connection_options, seed_addresses
from ._moves import executor_settings, run_moves
from ._planner import Plan
from ._repair import FixOptions, fix_key_count_slots, plan_fix
from ._shares import DEFAULT_THRESHOLD, rebalance
from ._topology import LABEL_KEYS, ClusterState, NodeAddress, TopologyError, split_address


def node_argument_spec() -> dict:
    return dict(
        node=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        role=dict(type="str", default="master", choices=["master", "replica"]),
        master=dict(type="str"),
        zone=dict(type="str"),
        rack=dict(type="str"),
        hostname=dict(type="str"),
        rebalance=dict(type="bool", default=False),
        replace=dict(type="str"),
        allow_data_loss=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        min_replicas=dict(type="int", default=1),
    )


def run_node(module) -> dict:
    params = module.params
    _refuse_conflicts(params)
    if params["state"] == "absent":
        return _remove(module)
    return _add(module)


def _refuse_conflicts(params: dict) -> None:
    if params["state"] == "absent":
        given = [name for name in ("replace", "master") if params[name]] + (["rebalance"] if params["rebalance"] else [])
        if given:
            pronoun = "them" if len(given) > 1 else "it"
            raise ModuleFailure("%s: not used with state absent; leave %s out" % (", ".join(given), pronoun))
    if params["role"] == "master" and params["master"]:
        raise ModuleFailure("master: names the master of a replica; set role: replica, or leave master out")
    if params["role"] == "replica" and params["rebalance"]:
        raise ModuleFailure("rebalance: moves slots onto a master; a replica takes none - leave it out")
    if params["replace"] and (params["master"] or params["rebalance"]):
        raise ModuleFailure("replace: the new node takes the old one's place and role; leave master and rebalance out")


def _options_and_state(module):
    params = module.params
    options = connection_options(params)
    state = observe_cluster(_seeds(params), options)
    require_usable(state)
    if state.not_configured:
        raise ModuleFailure("the nodes form no cluster yet; form one with redisops.cluster.redis_cluster_create")
    return options, state


def _seeds(params: dict) -> tuple:
    """The seeds, less the node being added when it is one of them (it knows nobody yet)."""
    seeds = seed_addresses(params)
    if params["state"] == "absent":
        return seeds
    others = tuple(seed for seed in seeds if seed.key != _node_address(params["node"]).key) \
        if ":" in params["node"] else seeds
    if not others:
        raise ModuleFailure("login_host / nodes: give a member of the cluster to reach it through, not only node %s"
                            % params["node"])
    return others


def _node_address(name: str) -> NodeAddress:
    try:
        host, port = split_address(name)
    except TopologyError as exc:
        raise ModuleFailure("node: %s" % exc) from None
    return NodeAddress(host, port)


def _labelled(params: dict) -> NodeAddress:
    """The node's address with its labels: from the options, else from its entry in nodes."""
    address = _node_address(params["node"])
    listed = next((seed.labels for seed in seed_addresses(params) if seed.key == address.key), ())
    labels = dict(listed)
    labels.update((name, params[name]) for name in LABEL_KEYS if params.get(name))
    return NodeAddress(address.host, address.port, tuple(sorted(labels.items())))


def _with_node(result: dict, node, role: str = "") -> dict:
    result["node"] = {"id": node.id, "address": node.address, "role": role or node.role} if node else None
    result.setdefault("moves", [])
    result.setdefault("slots_moved", 0)
    result.setdefault("keys_moved", 0)
    return result


# --- absent ---------------------------------------------------------------------------------------------------

def _remove(module) -> dict:
    params = module.params
    options, state = _options_and_state(module)
    node = find_node(state, params["node"])
    if node is None:
        return _with_node(_apply(module, options, state, Plan()), None)
    refuse_removal(state, node, params["force"], params["min_replicas"], params["allow_data_loss"])
    if node.role == "master" and node.entry.slots and node.reachable:
        return _with_node(_drain_and_remove(module, node), node)
    steps = []
    if node.role == "master" and node.entry.slots:
        # Unreachable, no replica took over, and allow_data_loss: its replica takes over if one answers, else the
        # other masters cover its slots, as redis_cluster_fix does with allow_unreachable_masters.
        counts = count_keys(state, options, fix_key_count_slots(state))
        steps += plan_fix(state, counts, FixOptions(allow_unreachable_masters=True)).steps
    elif node.role == "master":
        steps += rehome_steps(state, node)
    steps += removal_steps(node)
    return _with_node(_apply(module, options, state, Plan(tuple(steps))), node)


def _drain_and_remove(module, node) -> dict:
    """It is kept out of failovers, its slots go to the other masters in proportion to what each serves (only its
    slots move), then its replicas follow the masters that need them, then every node forgets it and it is reset."""
    node_id = node.id

    def decide(params, state, holdings, keys_by_slot):
        if node_id not in holdings:
            return ()
        moves = rebalance(holdings, drain_weights(holdings, node_id), 0, 0, keys_by_slot, False, params["slot_choice"])
        refuse_short_memory(state, state.by_id[node_id], moves, keys_by_slot)
        return moves

    def after(state, moves):
        leaving = state.by_id[node_id]
        return tuple(rehome_steps(state, leaving) + removal_steps(leaving))

    return run_moves(module, decide, before=(no_failover_step(node),), after=after)


# --- replace --------------------------------------------------------------------------------------------------

def _replace(module, options, state, new) -> dict:
    """The new node takes the old one's place without moving a slot: as a replica of the old master that then takes
    over, or as a replica of the old replica's master; then the old node leaves."""
    params = module.params
    old = find_node(state, params["replace"])
    if old is None:
        if new is None:
            raise ModuleFailure("replace: %r is no node of the cluster; to add %s, leave replace out"
                                % (params["replace"], params["node"]))
        return _with_node(_apply(module, options, state, Plan()), new)
    if new is not None and new.id == old.id:
        raise ModuleFailure("replace: %s is node itself; give the node that takes its place as node" % old.describe())
    steps = []
    if new is None:
        state, joining, steps = _joining(params, options, state)
        new = state.by_id[joining.myself.id]
    steps += replacement_steps(state, old, new) + removal_steps(old)
    role = "master" if old.role == "master" and old.entry.slots else "replica"
    return _with_node(_apply(module, options, state, Plan(tuple(steps))), new, role)


def _joining(params: dict, options, state: ClusterState) -> tuple:
    """The node to add, refused unless empty and alone: (the state with it, its observation, the steps that join it)."""
    joining = observe_node(_labelled(params), options)
    refuse_unfit(joining, state)
    state = ClusterState(state.observations + (joining,))
    return state, joining, meet_steps(state, joining)


# --- present --------------------------------------------------------------------------------------------------

def _add(module) -> dict:
    params = module.params
    options, state = _options_and_state(module)
    member = find_node(state, params["node"])
    if params["replace"]:
        return _replace(module, options, state, member)
    if member is None:
        state, joining, before = _joining(params, options, state)
        member = state.by_id[joining.myself.id]
    else:
        joining, before = None, []
    if params["role"] == "master":
        return _as_master(module, options, state, member, joining, before)
    return _as_replica(module, options, state, member, before)


def _as_master(module, options, state, node, joining, before) -> dict:
    params = module.params
    if node.role == "replica":
        raise ModuleFailure("node: %s is a replica of %s; promote it with redisops.cluster.redis_cluster_failover, or "
                            "remove it (state: absent) and add it again as a master"
                            % (node.describe(), state.label(node.entry.master_id)))
    if params["rebalance"]:
        def observe(options):
            observed = observe_cluster(_seeds(params), options)
            return ClusterState(observed.observations + (observe_node(joining.address, options),)) if joining \
                else observed

        def decide(params, state, holdings, keys_by_slot):
            return rebalance(holdings, {}, DEFAULT_THRESHOLD, 0, keys_by_slot, True, params["slot_choice"])

        return _with_node(run_moves(module, decide, observe=observe, before=before if joining else ()), node)
    return _with_node(_apply(module, options, state, Plan(tuple(before))), node)


def _as_replica(module, options, state, node, before) -> dict:
    params = module.params
    masters = serving_masters(state, leaving=(node.id,))
    if params["master"]:
        master = find_node(state, params["master"])
        if master is None or master not in masters:
            raise ModuleFailure("master: %r names no master that serves slots; give a node id or host:port of one of "
                                "%s" % (params["master"], ", ".join(m.address for m in masters)))
    elif node.role == "replica":
        master = state.by_id.get(node.entry.master_id)
    else:
        master = best_master(state, node, masters)
    if node.role == "master" and node.entry.slots:
        raise ModuleFailure("node: %s is a master serving slots; move them away first (redis_cluster_rebalance with "
                            "weight 0) or use replace" % node.describe())
    if node.role == "master" and state.replicas_of(node.id):
        raise ModuleFailure("node: %s is a master with replicas; remove them or attach them elsewhere first"
                            % node.describe())
    steps = list(before)
    if node.role == "master" or node.entry.master_id != master.id:
        steps += attach_steps(node, master) + [converged_step()]
    return _with_node(_apply(module, options, state, Plan(tuple(steps))), node, "replica")


def _apply(module, options, state, plan) -> dict:
    return apply_plan(module, state, plan, options, **executor_settings(module.params))
