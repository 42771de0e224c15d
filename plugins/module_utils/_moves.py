# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend the slot-moving modules share (rebalance, reshard). Private to redisops.cluster.

observe -> refuse an unsound cluster -> finish slots an interrupted move left open -> decide the moves
(the module's own pure function) -> report them (check mode) or carry them out -> observe again.
"""

from __future__ import annotations

import os

from ._change import apply_plan, check_request
from ._client import count_keys, observe_cluster, require_usable
from ._executor import ExecutionError, Executor
from ._module import ModuleFailure, connection_options, seed_addresses
from ._planner import Plan, PlanError, handed_over, plan_moves, refuse_unsound
from ._repair import plan_open_slots
from ._shares import SLOT_CHOICES, Move, SharesError, apply_moves
from ._findings import assess
from ._topology import named_nodes


# Seconds at most that clients get to learn a master that serves no slot once it has its first slots (client_grace).
DEFAULT_CLIENT_GRACE = 10.0
MAX_CLIENT_GRACE = 60.0


def move_argument_spec(busy_keys: str = "replace") -> dict:
    """Options of the modules that migrate slots (documented in the redisops.cluster.migration fragment); busy_keys
    names the option that overwrites a different key already on the target."""
    spec = dict(
        pipeline=dict(type="int", default=1000),
        timeout=dict(type="int", default=60000),
        parallel=dict(type="int", default=4),
        progress_file=dict(type="path"),
        slot_choice=dict(type="str", default="contiguous", choices=list(SLOT_CHOICES)),
        client_grace=dict(type="float", default=DEFAULT_CLIENT_GRACE),
    )
    spec[busy_keys] = dict(type="bool", default=False)
    return spec


def client_grace(params: dict) -> float:
    """Seconds clients get to learn a master that serves no slot, once it has its first slots."""
    grace = params["client_grace"]
    if not 0 <= grace <= MAX_CLIENT_GRACE:
        raise ModuleFailure("client_grace must be between 0 and %g seconds, got %g" % (MAX_CLIENT_GRACE, grace))
    return grace


def executor_settings(params: dict) -> dict:
    for name in ("pipeline", "timeout", "parallel"):
        if params[name] < 1:
            raise ModuleFailure("%s must be 1 or more, got %d" % (name, params[name]))
    _require_writable(params["progress_file"])
    # redis_cluster_node names it replace_keys: its replace names the node to replace.
    replace = params["replace_keys"] if "replace_keys" in params else params["replace"]
    return dict(pipeline=params["pipeline"], timeout_ms=params["timeout"], replace=replace,
                parallel=params["parallel"], progress_file=params["progress_file"])


def owned_slots(observation) -> list:
    """The slots a master serves or has open: their key counts choose and describe the moves."""
    me = observation.myself
    slots = {slot for first, last in me.slots for slot in range(first, last + 1)}
    slots.update(slot for slot, _partner in me.migrating + me.importing)
    return sorted(slots)


def flat_key_counts(state, counts) -> dict:
    """slot -> keys on the slot's owner."""
    return {slot: counts.get(owner, {}).get(slot, 0) for slot, owner in state.slot_owners.items()}


def _require_writable(path) -> None:
    """A progress file that cannot be written would stop a run after its first batch: refuse it before any move."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    writable = os.access(path, os.W_OK) if os.path.exists(path) else os.access(directory, os.W_OK | os.X_OK)
    if os.path.isdir(path) or not os.path.isdir(directory) or not writable:
        raise ModuleFailure("progress_file: cannot write %s; give a file in an existing, writable directory" % path)


def run_moves(module, decide, observe=None, before=(), after=None) -> dict:
    """decide(params, state, holdings, key_counts) -> moves (shares.Move); raises SharesError on impossible input.

    observe(options) -> the state to plan from (default: the cluster the seeds lead to); before: steps that come
    ahead of the moves (a node joining); after(state, moves) -> steps that follow them (a drained node leaving)."""
    params = module.params
    options = connection_options(params)
    settings = executor_settings(params)
    grace = client_grace(params)
    observe = observe or (lambda options: observe_cluster(seed_addresses(params), options))
    state = observe(options)
    require_usable(state)
    if state.not_configured:
        raise ModuleFailure("the nodes form no cluster yet; form one with redisops.cluster.redis_cluster_create")
    refuse_unsound(state, assess(state))
    counts = count_keys(state, options, owned_slots)
    finishing = plan_open_slots(state, counts)
    finished = []

    def plan_of(state, counts, moves, ahead=()) -> Plan:
        steps = tuple(ahead) + tuple(before) + plan_moves(state, moves, counts, grace).steps
        return Plan(steps + tuple(after(state, moves) if after else ()), finishing.warnings)

    if not finishing.empty:
        # The moves are planned from the holdings the finishing leaves: bad input fails before its writes, and
        # check mode shows the whole run.
        moves, keys_by_slot = _decide(decide, params, state, counts, _after(_holdings(state), handed_over(finishing)))
        if module.check_mode:
            module.warn("slots left open by an interrupted move are finished first; the moves after them are planned"
                        " from the slot owners the finishing leaves, and planned again once it is done")
            plan = plan_of(state, counts, moves, ahead=finishing.steps)
            return _reported(apply_plan(module, state, plan, options, **settings), state, moves, keys_by_slot, (),
                             applied=False)
        # The approval (expect_state_id) is of the state the check-mode run saw: this one, before the finishing.
        check_request(params, state)
        finished = _finish_open_slots(state, finishing, options, settings, params["wait_timeout"])
        state = observe(options)
        counts = count_keys(state, options, owned_slots)
    moves, keys_by_slot = _decide(decide, params, state, counts, _holdings(state))
    result = apply_plan(module, state, plan_of(state, counts, moves), options, checked_earlier=bool(finished),
                        **settings)
    return _reported(result, state, moves, keys_by_slot, finished, applied=not module.check_mode)


def _reported(result: dict, state, moves, keys_by_slot, finished, applied: bool) -> dict:
    """result with the moves (their slot and key counts) and the open slots finished first."""
    result["finished_open_slots"] = list(finished)
    result["changed"] = result["changed"] or bool(finished)
    result["slots_moved"] = sum(len(move.slots) for move in moves) if applied else 0
    result["moves"] = [{"source": state.by_id[m.source].address, "target": state.by_id[m.target].address,
                        "slots": len(m.slots), "keys": sum(keys_by_slot.get(slot, 0) for slot in m.slots)}
                       for m in moves]
    return result


def _holdings(state) -> dict:
    """master id -> the slot ranges it serves, for every master not flagged failed."""
    return {node.id: node.entry.slots for node in state.masters if not node.entry.failed}


def _after(holdings: dict, new_owners: dict) -> dict:
    """holdings once every slot in new_owners (slot -> node id) has gone to its new owner."""
    owner = {slot: node for node, ranges in holdings.items() for first, last in ranges for slot in range(first, last + 1)}
    grouped = {}
    for slot, node in new_owners.items():
        if owner.get(slot, node) != node and node in holdings:
            grouped.setdefault((owner[slot], node), []).append(slot)
    return apply_moves(holdings, [Move(source, target, tuple(sorted(slots))) for (source, target), slots in grouped.items()])


def _decide(decide, params, state, counts, holdings: dict) -> tuple:
    """(the moves decide chooses for holdings, keys by slot)."""
    keys_by_slot = flat_key_counts(state, counts)
    try:
        return decide(params, state, holdings, keys_by_slot), keys_by_slot
    except SharesError as exc:
        raise PlanError(_named(str(exc), state)) from None


def _named(message: str, state) -> str:
    """message with each node id it holds (the shares speak in ids) given as the node's address and short id."""
    for node in state.nodes:
        message = message.replace(node.id, state.label(node.id))
    return message


def _finish_open_slots(state, plan, options, settings, wait_timeout) -> list:
    executor = Executor(tuple(obs.address for obs in state.reachable), options, wait_timeout, **settings)
    try:
        return executor.run(plan)
    except ExecutionError as exc:
        raise ModuleFailure("finishing the slots an interrupted move left open failed: %s" % exc,
                            changed=exc.wrote, completed=exc.completed) from None


def resolve_node(state, name: str, option: str):
    """A master named by id, id prefix (8+ characters) or host:port."""
    masters = [node for node in state.masters if not node.entry.failed]
    found = named_nodes(masters, name)
    if len(found) != 1:
        raise ModuleFailure("%s: %r names %s master; give a node id or host:port of one of %s"
                            % (option, name, "no" if not found else "more than one",
                               ", ".join(node.address for node in masters)))
    return found[0]
