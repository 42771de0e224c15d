# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_cluster_fix on a fast sample of seeded broken states (tests/lib/breakage.py); make fuzz runs many more.

Rerun one seed with its breakage, plans and verdicts: .venv/bin/python tests/fuzz_fix.py --seed N --verbose
"""

from __future__ import annotations

import os

import pytest
from breakage import StateSupply, check_repair, run_ours

SAMPLE_SEEDS = range(int(os.environ.get("FIX_SAMPLE_STATES", "20")))


@pytest.fixture(scope="module")
def states(request):
    """Builds each collected seed's state while the one before it is repaired."""
    seeds = [item.callspec.params["seed"] for item in request.session.items
             if item.originalname == "test_generated_state_is_repaired"]
    supply = StateSupply(seeds)
    yield supply
    supply.close()


@pytest.mark.parametrize("seed", SAMPLE_SEEDS)
def test_generated_state_is_repaired(states, seed):
    state = states.state(seed)
    first, second = run_ours(state)
    verdict = check_repair(state, second_run=second)
    story = "\n".join(["seed %d breakage:" % seed] + ["  " + line for line in state.breakage]
                      + ["notes: %s" % state.notes, "plan:"] + ["  " + step for step in first.get("plan") or []]
                      + ["error: %s" % first.get("msg") if first.get("failed") else "run succeeded",
                         "verdict: %s" % verdict.reasons,
                         "rerun: .venv/bin/python tests/fuzz_fix.py --seed %d --verbose" % seed])
    assert not first.get("failed"), story
    assert verdict.repaired and verdict.keys_lost == 0, story
