# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Debian hosts with systemd as PID 1, booted with systemd-nspawn, for testing the roles over SSH.

A root file system per Debian release is built once with debootstrap and kept in a cache directory
(REDISOPS_ROOTFS_CACHE, default /var/cache/redisops-tests): it is built in a temporary directory and
renamed into place when complete, so an interrupted build is never reused. Each booted host runs on
an overlay of that tree (its changes go to a throwaway upper directory, the cache stays clean),
shares the host's network, and runs sshd on a free loopback port that accepts a key generated for
the run. Hosts are always stopped and their overlays removed (context manager, plus an atexit net).

Command line, for playbooks that boot hosts and tear them down in separate processes (molecule):
  python nspawn_hosts.py up STATE_DIR RELEASE NAME...   boot NAMEs, write STATE_DIR/hosts.json
  python nspawn_hosts.py down STATE_DIR                  stop them and remove STATE_DIR
  python nspawn_hosts.py build RELEASE...                build (or find) the cached root file systems
                                                         ("servers": Debian 13 with SERVER_PACKAGES installed)
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from redis_harness import port_free

CACHE_DIR = os.environ.get("REDISOPS_ROOTFS_CACHE", "/var/cache/redisops-tests")
MIRROR = os.environ.get("REDISOPS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Debian release number -> code name.
RELEASES = {"12": "bookworm", "13": "trixie"}
# Installed by debootstrap: what a minimal managed Debian host has (python3-apt for Ansible's apt module,
# man-db so that `systemd-analyze verify` can check a unit's man: links).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server", "man-db", "procps")
# Downloaded into apt's cache but not installed, per release: the roles install them, as on a real host, without
# fetching them again on every run. Valkey is packaged from Debian 13 on.
_REDIS_PACKAGES = ("redis-server", "redis-tools", "python3-redis")
CACHED_PACKAGES = {"12": _REDIS_PACKAGES, "13": _REDIS_PACKAGES + ("valkey-server", "valkey-tools")}
# Installed in the servers tree (servers_rootfs): the other server versions the version matrix runs the tests on.
SERVER_PACKAGES = ("redis-server", "redis-tools", "valkey-server", "valkey-tools")
BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
_LIVE = set()


def _recipe_digest(release: str) -> str:
    """What a cached tree was built from; a changed package list builds a new tree."""
    recipe = json.dumps([release, MIRROR, BASE_PACKAGES, CACHED_PACKAGES[release]])
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


def unavailable_reason() -> str | None:
    """Why hosts cannot be booted here, or None when they can."""
    if sys.platform != "linux":
        return "systemd-nspawn needs Linux"
    if os.geteuid() != 0:
        return "booting systemd-nspawn containers needs root"
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "ssh", "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        return "missing %s (make roles-deps installs them)" % ", ".join(missing)
    with open("/proc/filesystems") as handle:
        if "overlay" not in handle.read():
            return "the kernel has no overlay file system"
    if not os.path.isdir("/sys/fs/cgroup/systemd") and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "neither a unified cgroup hierarchy nor a name=systemd cgroup v1 hierarchy is mounted"
    return None


def _run(args, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d):\n%s" % (" ".join(args), proc.returncode, proc.stdout[-4000:]))
    return proc


def rootfs(release: str) -> str:
    """The cached root file system of Debian `release` ("12", "13"), built on first use."""
    return cached_tree("debian%s-%s" % (release, _recipe_digest(release)), lambda target: _build(release, target))


def servers_rootfs() -> str:
    """The cached Debian 13 root file system with SERVER_PACKAGES installed, derived from rootfs("13")."""
    base = rootfs("13")
    digest = hashlib.sha256(json.dumps([os.path.basename(base), SERVER_PACKAGES]).encode()).hexdigest()[:10]
    return cached_tree("debian13-servers-%s" % digest, lambda target: _build_servers(base, target))


def cached_tree(name: str, build) -> str:
    """CACHE_DIR/name, made by build(target) on first use: in a temporary directory renamed into place when
    complete, under a lock, so parallel callers build it once and an interrupted build is never reused."""
    path = os.path.join(CACHE_DIR, name)
    if os.path.isdir(path):
        return path
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(path):
            return path
        # Holding the lock, any half-built tree of this recipe is a dead build's.
        for entry in os.listdir(CACHE_DIR):
            if entry.startswith(".%s.building-" % name):
                remove_tree(os.path.join(CACHE_DIR, entry))
        building = tempfile.mkdtemp(prefix=".%s.building-" % name, dir=CACHE_DIR)
        try:
            build(os.path.join(building, "root"))
            os.rename(os.path.join(building, "root"), path)
        finally:
            remove_tree(building)
    return path


def remove_tree(path: str) -> None:
    """Remove a directory, unmounting first whatever is mounted below it (an interrupted debootstrap
    leaves /proc mounted in its target; a host leaves its overlay)."""
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as handle:
        points = [line.split()[1] for line in handle]
    for point in sorted((point for point in points if point == real or point.startswith(real + "/")), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


def _build(release: str, target: str) -> None:
    _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES), RELEASES[release], target,
          MIRROR], timeout=1800)
    _run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--console=pipe", "-D", target,
          "--setenv=DEBIAN_FRONTEND=noninteractive",
          "apt-get", "install", "--yes", "--download-only"] + list(CACHED_PACKAGES[release]),
         timeout=900, stdin=subprocess.DEVNULL)
    # Every booted host writes its own name; debootstrap copies this machine's.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(target, "etc/hostname"))
    # An empty machine-id gives every booted host its own transient id.
    open(os.path.join(target, "etc/machine-id"), "w").close()


def _build_servers(base: str, target: str) -> None:
    _run(["cp", "-a", "--reflink=auto", base, target], timeout=600)
    _run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--console=pipe", "-D", target,
          "--setenv=DEBIAN_FRONTEND=noninteractive", "sh", "-c",
          "apt-get update -qq && apt-get install --yes --no-install-recommends %s && apt-get clean"
          % " ".join(SERVER_PACKAGES)],
         timeout=900, stdin=subprocess.DEVNULL)


def free_port_pair(offset: int = 0, host: str = "127.0.0.1", avoid=()) -> int:
    """A port that is free now, and whose port + offset is free too (a Redis port and its bus port).

    Both lie below the kernel's ephemeral range, where no outgoing connection can take one between now and
    the moment a server binds it (a role run takes a minute)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        ephemeral_low = int(handle.read().split()[0])
    candidates = range(10000, ephemeral_low - offset)
    while True:
        port = random.choice(candidates)
        if port in avoid or port + offset in avoid:
            continue
        if port_free(port, host) and (not offset or port_free(port + offset, host)):
            return port


@dataclasses.dataclass(eq=False)
class Host:
    """One booted container: its name (also its hostname), SSH port and run directory."""

    name: str
    release: str
    ssh_port: int
    run_dir: str
    key_file: str
    nspawn_pid: int = 0
    leader_pid: int = 0
    system_state: str = ""
    failed_units: tuple = ()
    cgroups: tuple = ()

    @property
    def merged(self) -> str:
        return os.path.join(self.run_dir, "merged")

    @property
    def console_log(self) -> str:
        return os.path.join(self.run_dir, "console.log")

    def ssh_args(self) -> list:
        return ["ssh", "-q", "-i", self.key_file, "-p", str(self.ssh_port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                "root@127.0.0.1"]

    def run(self, command: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
        """A shell command run on the host over SSH; stdout and stderr apart."""
        proc = subprocess.run(self.ssh_args() + [command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError("%s: %r failed (rc %d): %s%s"
                               % (self.name, command, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def inventory_vars(self) -> dict:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.key_file,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }


def _prepare(host: Host, lower: str) -> None:
    for part in ("upper", "work", "merged"):
        os.makedirs(os.path.join(host.run_dir, part))
    _run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (
        lower, os.path.join(host.run_dir, "upper"), os.path.join(host.run_dir, "work")), host.merged], timeout=30)
    with open(os.path.join(host.merged, "etc/hostname"), "w") as handle:
        handle.write(host.name + "\n")
    with open(os.path.join(host.merged, "etc/ssh/sshd_config.d/redisops-test.conf"), "w") as handle:
        handle.write("Port %d\nListenAddress 127.0.0.1\nPasswordAuthentication no\n" % host.ssh_port)
    ssh_dir = os.path.join(host.merged, "root/.ssh")
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    shutil.copyfile(host.key_file + ".pub", os.path.join(ssh_dir, "authorized_keys"))


def _own_cgroups(host: Host) -> tuple:
    """A new cgroup for the host below this process's own, in each writable hierarchy systemd uses.

    systemd-nspawn --keep-unit runs the container in its caller's cgroup, so two hosts booted from one process
    would share it: each one's systemd would create, kill and remove the other's unit cgroups of the same name
    (the agent's service failed to start with 219/CGROUP after the other host's run removed its cgroup)."""
    own = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers] = path
    mounts = []
    with open("/proc/self/mounts") as handle:
        for line in handle:
            _source, point, kind, options = line.split()[:4]
            if kind == "cgroup2" and "" in own:
                mounts.append((point, own[""]))
            elif kind == "cgroup" and "name=systemd" in options.split(",") and "name=systemd" in own:
                mounts.append((point, own["name=systemd"]))
    leaf = "%s-%s" % (os.path.basename(os.path.dirname(host.run_dir)), host.name)
    paths = tuple(os.path.join(point, path.lstrip("/"), leaf) for point, path in mounts)
    for path in paths:
        os.makedirs(path, exist_ok=True)
    return paths


def _remove_cgroups(paths, timeout: float = 10.0) -> None:
    """Remove a stopped host's cgroups, the ones its systemd made inside them first; a cgroup whose killed
    processes are still exiting is busy for a moment."""
    deadline = time.monotonic() + timeout
    for path in paths:
        inner = sorted((parent for parent, _dirs, _files in os.walk(path)), key=lambda parent: parent.count("/"),
                       reverse=True)
        for cgroup in inner:
            while True:
                try:
                    os.rmdir(cgroup)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


def _boot(host: Host) -> None:
    host.cgroups = _own_cgroups(host)
    # The shell enters the host's cgroups and becomes systemd-nspawn, which then runs the container in them.
    enter = "".join('echo $$ > "%s/cgroup.procs" && ' % path for path in host.cgroups)
    with open(host.console_log, "w") as console:
        proc = subprocess.Popen(
            ["sh", "-c", enter + 'exec "$@"', "sh",
             "systemd-nspawn", "--quiet", "-D", host.merged, "--machine", host.name, "--boot", "--register=no",
             "--keep-unit", "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
    host.nspawn_pid = proc.pid


def _leader(nspawn_pid: int) -> int:
    """The container's PID 1 as seen from here: the nspawn process's child."""
    try:
        with open("/proc/%d/task/%d/children" % (nspawn_pid, nspawn_pid)) as handle:
            children = handle.read().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie left by a parent that has not reaped it yet counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_booted(host: Host, timeout: float) -> None:
    """Until systemd in the host reports running or degraded (then naming the failed units)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        if not is_running(host.nspawn_pid):
            with open(host.console_log) as handle:
                raise RuntimeError("%s: systemd-nspawn exited during boot:\n%s" % (host.name, handle.read()[-4000:]))
        if not host.leader_pid:
            host.leader_pid = _leader(host.nspawn_pid)
        try:
            proc = host.run("systemctl is-system-running --wait", timeout=max(5.0, deadline - time.monotonic()),
                            check=False)
            state = proc.stdout.strip()
            if state in ("running", "degraded"):
                host.system_state = state
                if state == "degraded":
                    failed = host.run("systemctl --failed --plain --no-legend", check=False).stdout.split("\n")
                    host.failed_units = tuple(line.split()[0] for line in failed if line.strip())
                return
            last_error = "system state %r %s" % (state, proc.stderr.strip())
        except subprocess.TimeoutExpired:
            last_error = "ssh timed out"
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not boot within %.0f s: %s" % (host.name, timeout, last_error))
        time.sleep(0.2)


def stop(host: Host) -> None:
    """Halt the container (SIGTERM asks nspawn for a clean shutdown), kill what remains, remove its overlay."""
    if host.nspawn_pid and is_running(host.nspawn_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(host.nspawn_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while is_running(host.nspawn_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    # The container's PID 1 takes every process of its PID namespace with it.
    for pid in (host.leader_pid, host.nspawn_pid):
        if pid and is_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if host.nspawn_pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(host.nspawn_pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(host.nspawn_pid, os.WNOHANG)
    remove_tree(host.run_dir)
    _remove_cgroups(host.cgroups)
    _LIVE.discard(host)


class Hosts:
    """Containers of one Debian release, booted together; a context manager that always tears them down."""

    def __init__(self, release: str, names, boot_timeout: float = BOOT_TIMEOUT, state_dir: str | None = None):
        lower = rootfs(release)
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="redisops-hosts-")
        os.makedirs(self.state_dir, exist_ok=True)
        self.key_file = os.path.join(self.state_dir, "id_ed25519")
        self.hosts = []
        try:
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "redisops-test", "-f", self.key_file],
                 timeout=30)
            ports = []
            for name in names:
                ports.append(free_port_pair(avoid=ports))
                host = Host(name=name, release=release, ssh_port=ports[-1], key_file=self.key_file,
                            run_dir=os.path.join(self.state_dir, name))
                self.hosts.append(host)
                _LIVE.add(host)
                _prepare(host, lower)
                _boot(host)
            for host in self.hosts:
                _wait_booted(host, boot_timeout)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def __iter__(self):
        return iter(self.hosts)

    def __getitem__(self, index):
        return self.hosts[index]

    def write_inventory(self, path: str, group: str = "redis_hosts", group_vars=None, host_vars=None) -> str:
        """An inventory (JSON is YAML) of these hosts in `group`, with the given variables."""
        hosts = {}
        for host in self.hosts:
            hosts[host.name] = dict(host.inventory_vars(), **(host_vars or {}).get(host.name, {}))
        with open(path, "w") as handle:
            json.dump({"all": {"children": {group: {"hosts": hosts, "vars": group_vars or {}}}}}, handle, indent=2)
        return path

    def save(self) -> None:
        with open(os.path.join(self.state_dir, "hosts.json"), "w") as handle:
            json.dump([dataclasses.asdict(host) for host in self.hosts], handle, indent=2)

    def close(self) -> None:
        for host in self.hosts:
            stop(host)
        remove_tree(self.state_dir)


def down(state_dir: str) -> None:
    """Stop the hosts a `save`d state directory describes, and remove it."""
    with contextlib.suppress(FileNotFoundError):
        with open(os.path.join(state_dir, "hosts.json")) as handle:
            for fields in json.load(handle):
                stop(Host(**dict(fields, failed_units=tuple(fields["failed_units"]),
                                 cgroups=tuple(fields["cgroups"]))))
    remove_tree(state_dir)


@atexit.register
def _stop_leftovers() -> None:
    for host in list(_LIVE):
        stop(host)


def main(argv) -> int:
    command, args = argv[0], argv[1:]
    if command == "build":
        for release in args:
            print(servers_rootfs() if release == "servers" else rootfs(release))
        return 0
    if command == "up":
        state_dir, release, names = args[0], args[1], args[2:]
        hosts = Hosts(release, names, state_dir=state_dir)
        hosts.save()
        # Detached: they outlive this process until `down`.
        _LIVE.clear()
        for host in hosts:
            failed = " (failed: %s)" % " ".join(host.failed_units) if host.failed_units else ""
            print("%s %s ssh port %d, system %s%s"
                  % (host.name, RELEASES[release], host.ssh_port, host.system_state, failed))
        return 0
    if command == "down":
        down(args[0])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
