# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A unique password never shows, with -vvv, in the modules' results and ansible-playbook's output, a failed login's
included. The playbooks, the roles' files, the agent's facts, the reconcile history and the report are checked by
test_tls_acl.py on its deployment; the agent's journal by tests/systemd/test_roles_systemd.py."""

from __future__ import annotations

import json
import uuid

import pytest
from cluster_checks import ACL_USER, minimal_acl
from playbook_runs import run_tasks
from redis_harness import TlsFiles


@pytest.mark.sample
def test_create_as_the_acl_user_and_a_wrong_password_show_neither_password(fresh_nodes, tmp_path):
    secret = "s3cret-" + uuid.uuid4().hex
    wrong = "wrong-" + uuid.uuid4().hex
    tls = TlsFiles(str(tmp_path))
    nodes = fresh_nodes(3, tls=tls, password="admin-" + uuid.uuid4().hex,
                        extra_args=["--user"] + minimal_acl(secret).split()[1:])
    connection = dict(nodes=[node.address for node in nodes], login_user=ACL_USER, tls=True, ca_certs=tls.ca,
                      client_cert_file=tls.cert, client_key_file=tls.key)
    run = run_tasks([{"redisops.cluster.redis_cluster_create": dict(connection, login_password=secret, replicas=0)},
                     {"redisops.cluster.redis_cluster_facts": dict(connection, login_password=wrong)}], verbosity=3)
    created, refused = run.results
    assert not created.get("failed") and created["changed"], created
    assert refused.get("failed") and ("WRONGPASS" in refused["msg"] or "invalid username-password" in refused["msg"]), refused
    for password in (secret, wrong):
        assert password not in run.output
        assert password not in json.dumps(run.results)
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.output  # -vvv did print the arguments
    # The ACL refused nothing the module sent, only the wrong password.
    assert {entry[b"reason"] for node in nodes for entry in node.call("ACL", "LOG")} <= {b"auth"}
