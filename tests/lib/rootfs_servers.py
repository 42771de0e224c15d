# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Other server versions for the tests: Debian 13's Redis and Valkey, run from the cached servers root file
system (nspawn_hosts.servers_rootfs) on this machine's network.

write_wrappers puts a server and a cli script in a directory; redis_harness runs them when REDIS_SERVER and
REDIS_CLI name them. Each script enters a mount namespace of its own (unshare), binds /dev, /proc and the
temporary directory into the tree there, and chroots into it, each step exec'ing the next: the process the
harness started is the server itself (its kill and pause reach it), and the mounts go away with it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile

# Name in the matrix -> the packages' server and cli binaries.
SERVERS = {"redis": ("redis-server", "redis-cli"), "valkey": ("valkey-server", "valkey-cli")}

_SCRIPT = """#!/bin/sh
# %(binary)s of %(root)s, on this machine's network with %(binds)s visible.
set -e
if [ -z "$REDISOPS_MOUNT_NAMESPACE" ]; then
  REDISOPS_MOUNT_NAMESPACE=1 exec unshare --mount --propagation private "$0" "$@"
fi
unset REDISOPS_MOUNT_NAMESPACE
for dir in %(binds)s; do
  mkdir -p %(root)s"$dir"
  mount --rbind "$dir" %(root)s"$dir"
done
exec chroot %(root)s %(binary)s "$@"
"""


def unavailable_reason() -> str | None:
    """Why the servers tree cannot be built or run here, or None when it can."""
    if sys.platform != "linux":
        return "mount namespaces and chroot need Linux"
    if os.geteuid() != 0:
        return "mounting and chroot need root"
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        return "missing %s (make roles-deps installs them)" % ", ".join(missing)
    return None


def bind_dirs() -> list:
    """What the servers and clients must see of this machine: devices, processes, the tests' files."""
    return ["/dev", "/proc", os.path.realpath(tempfile.gettempdir())]


def write_wrappers(root: str, server: str, directory: str) -> dict:
    """Scripts in directory that run `server`'s binaries from root; the environment that points the harness at them."""
    env = {}
    for variable, binary in zip(("REDIS_SERVER", "REDIS_CLI"), SERVERS[server]):
        path = os.path.join(directory, binary)
        with open(path, "w") as handle:
            handle.write(_SCRIPT % {"binary": shlex.quote("/usr/bin/" + binary), "root": shlex.quote(root),
                                    "binds": " ".join(shlex.quote(path) for path in bind_dirs())})
        os.chmod(path, 0o755)
        env[variable] = path
    return env
