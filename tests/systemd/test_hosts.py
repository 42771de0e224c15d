# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The booted hosts themselves: systemd as PID 1, reached by Ansible over SSH, torn down without a trace."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import nspawn_hosts
from playbook_runs import run_playbook

RELEASES = os.environ.get("REDISOPS_SYSTEMD_RELEASES", "12 13").split()

pytestmark = pytest.mark.skipif(nspawn_hosts.unavailable_reason() is not None,
                                reason=str(nspawn_hosts.unavailable_reason()))


@pytest.mark.parametrize("release", RELEASES, ids=["debian%s" % release for release in RELEASES])
def test_playbook_over_ssh_sees_systemd_and_leaves_no_trace(release, tmp_path):
    names = ["redisops-smoke-%s" % release]
    with nspawn_hosts.Hosts(release, names) as hosts:
        host = hosts[0]
        inventory = hosts.write_inventory(str(tmp_path / "inventory.json"))
        playbook = tmp_path / "play.yml"
        out = "/root/facts.json"
        playbook.write_text(json.dumps([{"hosts": "all", "gather_facts": True, "tasks": [
            {"name": "keep what Ansible found", "ansible.builtin.copy": {
                "content": "{{ {'service_mgr': ansible_facts.service_mgr, 'hostname': ansible_facts.hostname,"
                           " 'version': ansible_facts.distribution_major_version,"
                           " 'user': ansible_facts.user_id} | to_json }}",
                "dest": out, "mode": "0600"}}]}]))
        run = run_playbook(str(playbook), inventory)
        assert run.rc == 0 and run.recap[host.name]["changed"] == 1, run.output
        seen = json.loads(host.run("cat %s" % out).stdout)
        assert seen == {"service_mgr": "systemd", "hostname": host.name, "version": release, "user": "root"}
        nspawn_pid, merged = host.nspawn_pid, host.merged
        assert os.path.ismount(merged)
    # The overlay is gone, the cached tree untouched, no process left.
    assert not os.path.exists(merged) and not os.path.exists(hosts.state_dir)
    assert not os.path.exists(os.path.join(nspawn_hosts.rootfs(release), "root", "facts.json"))
    assert not nspawn_hosts.is_running(nspawn_pid)


def test_hosts_booted_together_keep_their_units_apart():
    """Each host's systemd has a cgroup tree of its own: a unit of one name, run on both hosts at once again and
    again, starts and is collected on each (sharing one tree, each systemd removed the other's unit cgroup and
    about half of the runs failed)."""
    with nspawn_hosts.Hosts(RELEASES[0], ["redisops-pair-a", "redisops-pair-b"]) as hosts:
        cgroups = [host.cgroups for host in hosts]
        failures = []
        for run in range(10):
            # Different lengths, so that one host's unit ends while the other's still runs.
            command = "systemd-run --quiet --wait --collect --unit=same-name -p Type=oneshot sleep 0.%d"
            procs = [subprocess.Popen(host.ssh_args() + [command % (3 + index)], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
                     for index, host in enumerate(hosts)]
            for host, proc in zip(hosts, procs):
                output = proc.communicate(timeout=60)[0]
                if proc.returncode != 0:
                    failures.append("run %d on %s: rc %d %s" % (run, host.name, proc.returncode, output.strip()))
        assert not failures, "\n".join(failures)
    assert cgroups[0] and len(set(cgroups[0] + cgroups[1])) == 2 * len(cgroups[0])
    assert not any(os.path.exists(path) for path in cgroups[0] + cgroups[1])
