# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_node's defaults that follow the host's distribution, rendered by Ansible's own templating."""

from __future__ import annotations

import os

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS = os.path.join(ROOT, "roles", "redis_node", "defaults", "main.yml")
DERIVED = ("redis_node_package", "redis_node_server_binary", "redis_node_cli_binary", "redis_node_user",
           "redis_node_distribution_service")


def rendered(facts, **overrides) -> dict:
    with open(DEFAULTS) as handle:
        # A role's defaults file is trusted to hold templates, as Ansible's loader marks it.
        variables = {name: trust_as_template(value) if isinstance(value, str) else value
                     for name, value in yaml.safe_load(handle).items()}
    variables.update(overrides, ansible_facts=facts)
    templar = Templar(loader=DataLoader(), variables=variables)
    return {name: templar.template(variables[name]) for name in DERIVED}


@pytest.mark.parametrize("family", ["Debian", "Suse", None])
def test_redis_server_outside_the_rhel_family(family):
    facts = {"os_family": family} if family else {}
    assert rendered(facts) == {
        "redis_node_package": "redis-server", "redis_node_server_binary": "/usr/bin/redis-server",
        "redis_node_cli_binary": "/usr/bin/redis-cli", "redis_node_user": "redis",
        "redis_node_distribution_service": "redis-server.service"}


def test_redis_on_the_rhel_family():
    assert rendered({"os_family": "RedHat"}) == {
        "redis_node_package": "redis", "redis_node_server_binary": "/usr/bin/redis-server",
        "redis_node_cli_binary": "/usr/bin/redis-cli", "redis_node_user": "redis",
        "redis_node_distribution_service": "redis.service"}


@pytest.mark.parametrize("family, package", [("Debian", "valkey-server"), ("RedHat", "valkey")])
def test_a_valkey_package_names_valkey_programs_and_user(family, package):
    assert rendered({"os_family": family}, redis_node_package=package) == {
        "redis_node_package": package, "redis_node_server_binary": "/usr/bin/valkey-server",
        "redis_node_cli_binary": "/usr/bin/valkey-cli", "redis_node_user": "valkey",
        "redis_node_distribution_service": package + ".service"}
