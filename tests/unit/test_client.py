# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The client's own parts: the RESP packer sends exactly what redis-py would, for any command, on every call;
connection errors name the option to set."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ansible_collections.redisops.cluster.plugins.module_utils._client import (
    SLOT, command_count, describe_error, pack_commands, per_slot,
)

ARGUMENT = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
# redis-py splits a command name that holds spaces into words; the collection's names are single words.
COMMAND = st.tuples(st.sampled_from(["SET", "MIGRATE", "CLUSTER"]), st.lists(ARGUMENT, max_size=80)).map(
    lambda parts: [parts[0]] + parts[1])


def reference(commands) -> bytes:
    connection = Connection()
    return b"".join(b"".join(connection.pack_command(*command)) for command in commands)


@given(st.lists(COMMAND, max_size=6))
def test_packing_matches_redis_py(commands):
    # Twice: the second call packs from the remembered words.
    assert pack_commands(commands) == reference(commands)
    assert pack_commands(commands) == reference(commands)


def test_equal_numbers_of_different_types_are_packed_apart():
    # 1, "1" and 1.0 share a hash: each must still be sent as itself.
    commands = [("SET", 1, "1"), ("SET", 1.0, 1), ("SET", "1", 1.0)]
    assert pack_commands(commands) == reference(commands)


@pytest.mark.parametrize("value", [True, None, object()])
@pytest.mark.parametrize("more", [0, 30])
def test_values_redis_cannot_take_are_refused(value, more):
    # A short command and one long enough for hiredis to pack.
    with pytest.raises(TypeError):
        pack_commands([("SET", "key", value) + ("x",) * more])


TEMPLATES = [("CLUSTER", "SETSLOT", SLOT, "IMPORTING", "a" * 40), ("CLUSTER", "SETSLOT", SLOT, "STABLE"),
             ("CLUSTER", "GETKEYSINSLOT", SLOT, 8000), (SLOT,), ("X", SLOT, b"\x00\r\n", 1.5)]


@given(st.lists(st.integers(min_value=0, max_value=16383), max_size=50),
       st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=3))
def test_commands_per_slot_are_packed_as_each_command_would_be(slots, templates):
    packed = per_slot(slots, *templates)
    expanded = [tuple(slot if value is SLOT else value for value in template) for slot in slots for template in templates]
    assert packed.data == pack_commands(expanded) and packed.count == len(expanded)
    assert command_count([("MULTI",), packed, ("EXEC",)]) == len(expanded) + 2


@pytest.mark.parametrize("error, hint", [
    # Both ways a TLS 1.3 node refuses a client without a certificate, as redis-py reports them.
    ("Error 1 reading from socket. [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required",
     "set client_cert_file and client_key_file"),
    ("Error 8 while writing to socket. EOF occurred in violation of protocol (_ssl.c:2427).",
     "set client_cert_file and client_key_file"),
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "check ca_certs"),
    ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "check tls and login_port"),
])
def test_tls_errors_name_the_option_to_set(error, hint):
    assert hint in describe_error(ConnectionError(error))


def test_a_missing_acl_permission_is_told_apart_from_a_wrong_password():
    denied = describe_error(NoPermissionError("this user has no permissions to run the 'cluster|failover' command"))
    assert "cluster|failover" in denied and "ACL SETUSER" in denied and "authentication failed" not in denied
    assert "authentication failed" in describe_error(AuthenticationError("invalid username-password pair"))


def test_a_timeout_with_tls_on_says_the_node_may_not_speak_tls():
    assert "check tls" in describe_error(RedisTimeoutError("Timeout connecting to server"), tls=True)
    assert "tls" not in describe_error(RedisTimeoutError("Timeout connecting to server"))
