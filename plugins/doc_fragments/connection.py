# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The connection options every redisops.cluster module shares.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Address of the node to start from when O(nodes) is not given.
    type: str
    default: localhost
  login_port:
    description:
      - Port of O(login_host), and the port of O(nodes) entries that name none.
    type: int
    default: 6379
  nodes:
    description:
      - Seed nodes, as C(host:port) strings (C([addr]:port) for IPv6) or dictionaries.
      - A dictionary has the keys C(host), C(port) (default O(login_port)) and the optional labels
        C(zone), C(rack) and C(hostname), the fault domains that placement and the anti-affinity
        checks use.
      - The modules discover every other cluster member from the seeds' views, so one reachable
        seed is enough to observe a whole cluster; list every node you want labels for.
      - When given, O(login_host) is not used.
    type: list
    elements: raw
    default: []
  login_user:
    description:
      - ACL user to authenticate as. Without it, O(login_password) authenticates the C(default) user.
      - Falls back to the E(REDIS_CLUSTER_USER) environment variable.
    type: str
  login_password:
    description:
      - Password of O(login_user) (or of C(requirepass)).
      - Falls back to the E(REDIS_CLUSTER_PASSWORD) environment variable. Never returned or logged.
    type: str
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  validate_certs:
    description:
      - Verify the server certificate and its hostname when O(tls=true).
      - Turn off only for self-signed test setups.
    type: bool
    default: true
  ca_certs:
    description: CA bundle (PEM) to verify server certificates with, when O(tls=true).
    type: path
  client_cert_file:
    description: Client certificate (PEM) for mutual TLS; requires O(client_key_file).
    type: path
  client_key_file:
    description: Private key (PEM) of O(client_cert_file).
    type: path
  connect_timeout:
    description: Seconds to wait for a connection to one node.
    type: float
    default: 2.0
  command_timeout:
    description: Seconds to wait for one reply from a node.
    type: float
    default: 10.0
requirements:
  - redis (the redis-py Python library) >= 4.5 on the host that runs the module
notes:
  - Every module of the collection belongs to the action group C(redisops.cluster.redis_cluster),
    so C(module_defaults) can set these options once for a play.
"""
