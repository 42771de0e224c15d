#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make demo: the collection's lifecycle playbooks on this machine, without systemd.

Three inventory hosts (127.0.0.2-4, zones a, b, c) run three instances each as plain processes (redis_node with
redis_node_supervisor none), every file under one temporary directory. The demo runs `ansible-playbook
redisops.cluster.NAME` for each step - deploy, check, scale_out (+1 master, +1 replica on two more hosts),
rebalance, reconcile after breaking the cluster (a master killed, a slot left half-moved), scale_in,
rolling_restart - and after each step prints the check playbook's table of the nodes. It writes keys through a
cluster client before the steps and reads every one back at the end.

Each playbook's full output goes to a log file under the demo's directory (printed at the start). Set DEMO_KEEP=1
to leave the nodes running until Enter is pressed.
"""

from __future__ import annotations

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))

import redis  # noqa: E402
from playbook_runs import run_collection_playbook  # noqa: E402
from role_hosts import RoleHosts  # noqa: E402

KEYS = 10000
PASSWORD = "demo-password"
CLUSTER = "redis_cluster"
NEW = "redis_cluster_new"
TABLE_LINE = re.compile(r'^\s+"(.*)",?$')


class Demo:
    def __init__(self, hosts: RoleHosts):
        self.hosts = hosts
        self.logs = os.path.join(hosts.root, "logs")
        os.makedirs(self.logs)
        self.step = 0
        self.written: dict = {}

    def playbook(self, name: str, **extra_vars) -> str:
        """Run redisops.cluster.<name>; stop the demo when it fails. Its output goes to a numbered log."""
        self.step += 1
        started = time.monotonic()
        run = run_collection_playbook(name, self.hosts.inventory(), extra_vars=extra_vars or None)
        log = os.path.join(self.logs, "%02d-%s.log" % (self.step, name))
        with open(log, "w") as handle:
            handle.write(run.output)
        changed = sum(recap["changed"] for recap in run.recap.values())
        print("\n== %s: %s (%d changes, %.1f s)"
              % (name, "ok" if run.rc == 0 else "FAILED", changed, time.monotonic() - started))
        if run.rc != 0:
            print(run.output[-4000:])
            raise SystemExit("redisops.cluster.%s failed; its whole output is in %s" % (name, log))
        return run.output

    def show(self) -> None:
        """The check playbook's table of the nodes, reporting only (findings do not stop the demo)."""
        output = run_collection_playbook("check", self.hosts.inventory(),
                                         extra_vars={"redis_cluster_check_fail_on": []}).output
        for section in ("Show the nodes", "Show the findings"):
            block = output.split("TASK [%s]" % section, 1)[-1].split("TASK [", 1)[0]
            for line in block.splitlines():
                match = TABLE_LINE.match(line)
                if match and match.group(1) != "no findings":
                    print("   " + match.group(1).encode().decode("unicode_escape"))

    def client(self) -> redis.RedisCluster:
        host = self.hosts.hosts["host-1"]
        return redis.RedisCluster(host=host.address, port=host.ports[0], password=PASSWORD)

    def load_keys(self) -> None:
        client = self.client()
        pipe = client.pipeline()
        for index in range(KEYS):
            key, value = "demo:%d" % index, "value %d" % index
            pipe.set(key, value)
            self.written[key] = value
        pipe.execute()
        client.close()
        print("\n== wrote %d keys through a cluster client" % KEYS)

    def nodes(self) -> list:
        """CLUSTER NODES of host-1's first instance, split into fields."""
        host = self.hosts.hosts["host-1"]
        text = self.hosts.client(host.addresses[0]).execute_command("CLUSTER", "NODES").decode()
        return [line.split() for line in text.splitlines()]

    def break_cluster(self) -> None:
        """Kill -9 a master and leave one of another master's slots half-moved to a third, as an interrupted
        reshard would."""
        masters = [fields for fields in self.nodes() if "master" in fields[2] and len(fields) > 8]
        victim, source, target = (fields[1].split("@")[0] for fields in masters[:3])
        source_node, target_node = self.hosts.client(source), self.hosts.client(target)
        source_id, target_id = (source_node.execute_command("CLUSTER", "MYID").decode(),
                                target_node.execute_command("CLUSTER", "MYID").decode())
        slot = next(slot for slot in self._slots(source) if source_node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) > 1)
        target_node.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source_node.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = source_node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        host, port = target.rsplit(":", 1)
        source_node.execute_command("MIGRATE", host, port, "", 0, 5000, "AUTH", PASSWORD, "KEYS", *keys[:len(keys) // 2])
        self.hosts.kill(victim)
        print("\n== broke the cluster: killed the master %s (kill -9); slot %d half-moved from %s to %s (%d of %d keys)"
              % (victim, slot, source, target, len(keys) // 2, len(keys)))
        # Redis fails the dead master over to a replica after the node timeout; reconcile starts with what is left.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("fail" in fields[2].split(",") and fields[1].startswith(victim)
                                                      for fields in self.nodes()):
            time.sleep(0.2)

    def _slots(self, address: str) -> list:
        fields = next(fields for fields in self.nodes() if fields[1].startswith(address + "@"))
        slots = []
        for item in fields[8:]:
            if not item.startswith("["):
                first, _dash, last = item.partition("-")
                slots.extend(range(int(first), int(last or first) + 1))
        return slots

    def summary(self) -> bool:
        client = self.client()
        kept = sum(1 for key, value in self.written.items() if client.get(key) == value.encode())
        client.close()
        host = self.hosts.hosts["host-1"]
        info = self.hosts.client(host.addresses[0]).execute_command("CLUSTER", "INFO").decode()
        covered = int(re.search(r"cluster_slots_ok:(\d+)", info).group(1))
        print("\nslots covered: %d of 16384, keys written: %d, keys found: %d, keys lost: %d"
              % (covered, len(self.written), kept, len(self.written) - kept))
        return covered == 16384 and kept == len(self.written)


def main() -> int:
    started = time.monotonic()
    with RoleHosts(password=PASSWORD, node_timeout=3000, redis_cluster_replicas=2) as hosts:
        for zone in ("a", "b", "c"):
            hosts.add(CLUSTER, zone, 3)
        print("redisops.cluster demo: 9 nodes on 3 local hosts (127.0.0.2-4) in zones a, b, c; files and playbook "
              "logs under %s" % hosts.root)
        demo = Demo(hosts)
        demo.playbook("deploy")
        demo.show()
        demo.load_keys()
        demo.playbook("check")
        new_master = hosts.add(NEW, "a", 1)
        new_replica = hosts.add(NEW, "b", 1, redis_cluster_role="replica")
        demo.playbook("scale_out", redis_cluster_scale_out_group=NEW)
        for host in (new_master, new_replica):
            hosts.move(host.name, CLUSTER)
        demo.show()
        demo.playbook("rebalance")
        demo.break_cluster()
        demo.show()
        demo.playbook("reconcile", redis_cluster_reconcile_refresh=True)
        demo.show()
        demo.playbook("scale_in", redis_cluster_scale_in_nodes=new_master.addresses + new_replica.addresses)
        for host in (new_master, new_replica):
            hosts.move(host.name, "retired")
        demo.show()
        demo.playbook("rolling_restart")
        demo.show()
        demo.playbook("check")
        healthy = demo.summary()
        print("demo took %.0f s" % (time.monotonic() - started))
        if os.environ.get("DEMO_KEEP"):
            input("\nThe nodes are running (inventory hosts %s); press Enter to stop them."
                  % ", ".join("%s %s" % (host.name, " ".join(host.addresses)) for host in hosts.hosts.values()))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
