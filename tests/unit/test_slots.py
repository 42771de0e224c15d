# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.redisops.cluster.plugins.module_utils._slots import (
    SLOT_COUNT, count_slots, crc16, format_ranges, hash_tag, key_slot, parse_slot_token, ranges_from_slots, summarize_ranges,
    slots_from_ranges,
)


def test_crc16_check_value():
    # The XMODEM check value of the Redis Cluster specification.
    assert crc16(b"123456789") == 0x31C3


@pytest.mark.parametrize("key, slot", [("foo", 12182), ("bar", 5061), ("hello", 866), ("", 0)])
def test_key_slot_matches_redis(key, slot):
    # Values as CLUSTER KEYSLOT prints them.
    assert key_slot(key) == slot


@pytest.mark.parametrize("key, hashed", [
    (b"{user1000}.following", b"user1000"),
    (b"foo{}{bar}", b"foo{}{bar}"),
    (b"foo{{bar}}zap", b"{bar"),
    (b"foo{bar}{zap}", b"bar"),
    (b"nobraces", b"nobraces"),
    (b"open{only", b"open{only"),
])
def test_hash_tag_rules(key, hashed):
    assert hash_tag(key) == hashed


def test_tagged_keys_share_a_slot():
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")


@given(st.sets(st.integers(min_value=0, max_value=SLOT_COUNT - 1)))
def test_ranges_round_trip(slots):
    ranges = ranges_from_slots(slots)
    assert slots_from_ranges(ranges) == tuple(sorted(slots))
    assert count_slots(ranges) == len(slots)
    # Ranges are maximal: no two touch.
    assert all(later[0] > earlier[1] + 1 for earlier, later in zip(ranges, ranges[1:]))
    assert tuple(parse_slot_token(token) for token in format_ranges(ranges).split(",") if token) == ranges


@pytest.mark.parametrize("token", ["-1", "16384", "5-3", "a", "1-b", ""])
def test_bad_slot_tokens_are_refused(token):
    with pytest.raises(ValueError):
        parse_slot_token(token)


def test_summary_of_scattered_slots_is_cut_but_says_how_many():
    assert summarize_ranges(((0, 5460), (10923, 10923))) == "0-5460,10923"
    scattered = tuple((slot, slot) for slot in range(0, 300, 3))
    assert summarize_ranges(scattered) == "0,3,6,9,12,15,... (100 ranges, 0-297)"
