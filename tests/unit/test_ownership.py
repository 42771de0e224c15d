# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The slot-ownership model: per slot, who claims it, who says what, and when waiting cannot help."""

from __future__ import annotations

from test_fix_plan import OWNER, SECOND, THIRD, edited, with_views
from test_topology import HEALTHY_TEXT, cluster_from, view_text

from ansible_collections.redisops.cluster.plugins.module_utils._ownership import never_served, never_settles


def test_a_healthy_cluster_can_settle():
    state = cluster_from(HEALTHY_TEXT)
    assert state.ownership.uncovered == () and never_settles(state.observations) == ""
    assert all(never_served(obs, state.observations) == () for obs in state.observations)


def test_slots_nobody_claims_are_described_by_every_view():
    healthy = cluster_from(HEALTHY_TEXT)
    dropped = edited(view_text(HEALTHY_TEXT, THIRD), THIRD, slots="10923-16379")
    state = with_views(healthy, {THIRD: dropped})
    own = state.ownership
    assert own.uncovered == ((16380, 16383),) and 16380 not in own.claims
    assert set(own.named_by(16380).values()) == {THIRD, ""}
    text = own.describe(16380)
    assert "claimed by no reachable master" in text and "name nobody" not in text and "names nobody" in text
    # Only an owner's own claim spreads: waiting cannot help, and every node sees those slots unserved for good.
    assert "16380-16383 are claimed by no master" in never_settles(state.observations)
    assert all(never_served(obs, state.observations) == ((16380, 16383),)
               for obs in state.observations if obs.myself.id == THIRD)


def test_a_node_still_learning_an_owner_is_not_hopeless():
    healthy = cluster_from(HEALTHY_TEXT)
    learning = edited(view_text(HEALTHY_TEXT, SECOND), OWNER, slots="1-5460")
    state = with_views(healthy, {SECOND: learning})
    assert state.ownership.uncovered == ()
    assert never_settles(state.observations) == ""
    assert all(never_served(obs, state.observations) == () for obs in state.observations)


def test_an_importing_node_never_takes_the_claim_it_disagrees_with():
    healthy = cluster_from(HEALTHY_TEXT)
    # The second master imports slot 5 from the third and names nobody for it: the owner's claim never lands there.
    stuck = edited(edited(view_text(HEALTHY_TEXT, SECOND), OWNER, slots="0-4 6-5460"), SECOND,
                   extra="[5-<-%s]" % THIRD)
    state = with_views(healthy, {SECOND: stuck})
    reason = never_settles(state.observations)
    assert "imports slot(s) 5" in reason and state.by_id[OWNER].address in reason
    (second,) = [obs for obs in state.observations if obs.myself.id == SECOND]
    assert never_served(second, state.observations) == ((5, 5),)
