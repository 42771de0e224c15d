# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared AnsibleModule wrapper: connection argument spec, errors, timings. Private to redisops.cluster."""

from __future__ import annotations

import time

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ._client import HAS_REDIS, REDIS_IMPORT_ERROR, ClusterClientError, ConnectionOptions
from ._topology import NodeAddress, TopologyError, parse_node_specs


def connection_argument_spec() -> dict:
    """The options every module shares (documented once in the redisops.cluster.connection fragment)."""
    return dict(
        login_host=dict(type="str", default="localhost"),
        login_port=dict(type="int", default=6379),
        nodes=dict(type="list", elements="raw", default=[]),
        login_user=dict(type="str", fallback=(env_fallback, ["REDIS_CLUSTER_USER"])),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["REDIS_CLUSTER_PASSWORD"])),
        tls=dict(type="bool", default=False),
        validate_certs=dict(type="bool", default=True),
        ca_certs=dict(type="path"),
        client_cert_file=dict(type="path"),
        client_key_file=dict(type="path"),
        connect_timeout=dict(type="float", default=2.0),
        command_timeout=dict(type="float", default=10.0),
    )


class ModuleFailure(Exception):
    """A user-facing failure raised by a module backend: reported with fail_json, never as a traceback."""

    def __init__(self, message: str, **result):
        super().__init__(message)
        self.result = result


def connection_options(params: dict) -> ConnectionOptions:
    for name in ("connect_timeout", "command_timeout"):
        if params[name] <= 0:
            raise ModuleFailure("%s must be a positive number of seconds, got %s" % (name, params[name]))
    if bool(params["client_cert_file"]) != bool(params["client_key_file"]):
        raise ModuleFailure("client_cert_file and client_key_file must be given together")
    return ConnectionOptions(
        user=params["login_user"], password=params["login_password"], tls=params["tls"],
        validate_certs=params["validate_certs"], ca_certs=params["ca_certs"],
        client_cert_file=params["client_cert_file"], client_key_file=params["client_key_file"],
        connect_timeout=params["connect_timeout"], command_timeout=params["command_timeout"],
    )


def seed_addresses(params: dict) -> tuple:
    """`nodes` when given, else login_host:login_port."""
    try:
        if params["nodes"]:
            return parse_node_specs(params["nodes"], default_port=params["login_port"])
        return (NodeAddress(params["login_host"], params["login_port"]),)
    except TopologyError as exc:
        raise ModuleFailure("nodes: %s" % exc) from None


def run_module(argument_spec: dict, backend, **module_kwargs) -> None:
    """Build the module, run backend(module) -> result dict, add elapsed_ms, exit or fail cleanly."""
    spec = connection_argument_spec()
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, **module_kwargs)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)
    started = time.monotonic()
    try:
        result = backend(module)
    except ModuleFailure as exc:
        module.fail_json(msg=str(exc), elapsed_ms=elapsed_ms(started), **exc.result)
    except (ClusterClientError, TopologyError) as exc:
        module.fail_json(msg=str(exc), elapsed_ms=elapsed_ms(started))
    result["elapsed_ms"] = elapsed_ms(started)
    module.exit_json(**result)


def elapsed_ms(started: float) -> int:
    return int(round((time.monotonic() - started) * 1000))
