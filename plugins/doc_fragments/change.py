# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options and return values of every module that changes a cluster.
    DOCUMENTATION = r"""
options:
  wait_timeout:
    description:
      - Seconds to wait for the cluster to converge after a change (nodes meeting, roles and slot
        owners spreading through gossip). Waits poll every 100 ms.
      - Also how long a move waits out a node that refuses keys with C(CLUSTERDOWN) (a master that
        just joined, or a node that briefly misses a slot's owner), per outage.
      - On timeout the module fails naming the nodes that disagree or cannot reach each other's
        bus port; a rerun continues from the live state.
    type: float
    default: 60.0
  expect_state_id:
    description:
      - The RV(state_id) a reviewed check-mode run returned. The module refuses, changing nothing,
        when the cluster is no longer in that state (plan, approve, then apply).
    type: str
"""
