# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the state of this host's Redis Cluster instances as the Ansible local fact redis_cluster.

Each instance is read once (CLUSTER NODES, CLUSTER INFO, INFO) and reported from its own view, with the
collection's own parsing (the redisops_cluster package beside this file holds copies of its module_utils).
Usage: redis_cluster_agent.py SETTINGS_JSON. The password comes from the systemd credential "password"
($CREDENTIALS_DIRECTORY), else from the settings' password_file; never from the command line or the environment.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from redisops_cluster._client import ConnectionOptions, fan_out, observe_node  # noqa: E402  (needs the path above)
from redisops_cluster._facts import node_facts  # noqa: E402
from redisops_cluster._topology import ClusterState, NodeAddress, state_id  # noqa: E402

SCHEMA = 1
PASSWORD_CREDENTIAL = "password"
FACTS_MODE = 0o644


def read_settings(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_password(settings: dict) -> str | None:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    path = os.path.join(credentials, PASSWORD_CREDENTIAL) if credentials else settings.get("password_file")
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().rstrip("\n") or None


def connection_options(settings: dict, password: str | None) -> ConnectionOptions:
    tls = settings.get("tls") or {}
    return ConnectionOptions(
        user=settings.get("user") or None, password=password, tls=bool(tls),
        ca_certs=tls.get("ca_certs"), client_cert_file=tls.get("client_cert_file"),
        client_key_file=tls.get("client_key_file"),
        connect_timeout=settings.get("connect_timeout", 2.0), command_timeout=settings.get("command_timeout", 5.0),
    )


def own_view(observation) -> dict:
    """One reachable instance: its node facts and the cluster as it sees it."""
    view = ClusterState(observations=(observation,))
    myself = observation.myself
    info = observation.cluster_info
    failing = [{"id": entry.id, "address": "%s:%d" % (entry.host, entry.port),
                "flags": sorted(entry.flags & {"fail", "fail?"})}
               for entry in observation.entries if entry.failed or entry.possibly_failed]
    return {
        "node": node_facts(view.by_id[myself.id]),
        "cluster": {
            "state": info.get("cluster_state"),
            "known_nodes": info.get("cluster_known_nodes"),
            "size": info.get("cluster_size"),
            "slots_assigned": info.get("cluster_slots_assigned"),
            "slots_ok": info.get("cluster_slots_ok"),
            "slots_pfail": info.get("cluster_slots_pfail"),
            "slots_fail": info.get("cluster_slots_fail"),
            "current_epoch": info.get("cluster_current_epoch"),
            "my_epoch": info.get("cluster_my_epoch"),
            "failing_nodes": failing,
            "open_slots": sorted({slot for slot, _node in myself.migrating + myself.importing}),
            "view_id": state_id(view),
        },
    }


def instance_entry(address: NodeAddress, options: ConnectionOptions, previous: dict, now: str) -> dict:
    """The report of one instance; when it cannot be read, its error beside the last good data and its time."""
    try:
        observation = observe_node(address, options)
        if observation.reachable and observation.myself is not None:
            return dict(own_view(observation), collected_at=now, error=None, error_at=None)
        error = observation.error or "the node does not list itself in CLUSTER NODES"
    except Exception as exc:  # pylint: disable=broad-except
        # A reply this code cannot read (an instance in a state never met before) must not cost the other instances
        # their facts: it is reported as this instance's error.
        error = "%s: %s" % (type(exc).__name__, exc)
    return {"node": previous.get("node"), "cluster": previous.get("cluster"),
            "collected_at": previous.get("collected_at"), "error": error, "error_at": now}


def collect(settings: dict, password: str | None, previous: dict, now: str) -> dict:
    host = settings.get("host", "127.0.0.1")
    options = connection_options(settings, password)
    before = previous.get("instances") or {}
    ports = [str(int(port)) for port in settings["ports"]]
    entries = fan_out(lambda port: instance_entry(NodeAddress(host, int(port)), options, before.get(port) or {}, now),
                      ports)
    instances = dict(zip(ports, entries))
    return {"schema": SCHEMA, "collected_at": now, "interval": settings.get("interval"),
            "host": socket.gethostname(), "instances": instances}


def read_previous(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


def write_atomically(path: str, document: dict) -> None:
    """Readers (Ansible's setup) see the old file or the new one, never a part: a temporary file in the same
    directory, renamed over it. Its name does not end in .fact, so Ansible never reads it half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, ".redis_cluster.%d.%s.tmp" % (os.getpid(), secrets.token_hex(4)))
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FACTS_MODE)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=1, sort_keys=True)
            stream.write("\n")
            stream.flush()
            # Never executable: Ansible runs an executable .fact file instead of reading it. The service's umask
            # makes it 0644 at birth (and its system call filter refuses chmod); a strict umask by hand needs this.
            if stat.S_IMODE(os.fstat(stream.fileno()).st_mode) != FACTS_MODE:
                os.fchmod(stream.fileno(), FACTS_MODE)
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: %s SETTINGS_JSON\n" % argv[0])
        return 2
    settings = read_settings(argv[1])
    facts_file = settings["facts_file"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = collect(settings, read_password(settings), read_previous(facts_file), now)
    write_atomically(facts_file, document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
