# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared pytest setup: the collection on the import path, and real Redis nodes as fixtures."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))

from playbook_runs import COLLECTIONS_PATH  # noqa: E402  (needs the path above)
from redis_harness import RedisNodes, form_cluster  # noqa: E402

sys.path.insert(0, COLLECTIONS_PATH)


@pytest.fixture
def fresh_nodes(request):
    """Factory: fresh cluster-enabled nodes, stopped after the test whatever happens."""
    started = []

    def start(count, **kwargs):
        nodes = RedisNodes(count, **kwargs)
        started.append(nodes)
        return nodes

    yield start
    for nodes in started:
        nodes.close()


@pytest.fixture
def cluster3(fresh_nodes):
    """A new cluster of 3 masters without replicas for one test (tests may break it)."""
    nodes = fresh_nodes(3)
    form_cluster(nodes.nodes, replicas=0)
    return nodes


@pytest.fixture
def cluster6(fresh_nodes):
    """A new 3 masters + 3 replicas cluster for one test (tests may break it)."""
    nodes = fresh_nodes(6)
    form_cluster(nodes.nodes, replicas=1)
    return nodes
