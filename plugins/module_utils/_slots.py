# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hash slots: the 16384 slot space, slot ranges and key to slot. Private to redisops.cluster."""

from __future__ import annotations

SLOT_COUNT = 16384


def _crc16_table() -> tuple:
    # CRC16-CCITT (XMODEM), polynomial 0x1021: the checksum Redis Cluster hashes keys with.
    table = []
    for byte in range(256):
        crc = byte << 8
        for _bit in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The part of the key that is hashed: the first non-empty {...} section, else the key."""
    start = key.find(b"{")
    if start == -1:
        return key
    end = key.find(b"}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1:end]


def key_slot(key) -> int:
    if isinstance(key, str):
        key = key.encode("utf-8")
    return crc16(hash_tag(key)) % SLOT_COUNT


def parse_slot_token(token: str) -> tuple:
    """'42' -> (42, 42); '0-5460' -> (0, 5460). Raises ValueError on anything else."""
    first, sep, last = token.partition("-")
    if not first.strip().isdigit() or (sep and not last.strip().isdigit()):
        raise ValueError("%r is not a slot number or a first-last range" % token)
    low = int(first)
    high = int(last) if sep else low
    if not 0 <= low <= high < SLOT_COUNT:
        raise ValueError("slot range %r is outside 0-%d" % (token, SLOT_COUNT - 1))
    return (low, high)


def ranges_from_slots(slots) -> tuple:
    """Sorted slot numbers (any iterable) -> tuple of contiguous (first, last) ranges."""
    ranges = []
    for slot in sorted(set(slots)):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1][1] = slot
        else:
            ranges.append([slot, slot])
    return tuple((first, last) for first, last in ranges)


def slots_from_ranges(ranges) -> tuple:
    return tuple(slot for first, last in ranges for slot in range(first, last + 1))


def count_slots(ranges) -> int:
    return sum(last - first + 1 for first, last in ranges)


def format_ranges(ranges) -> str:
    """Ranges as Redis prints them: '0-5460,10923'."""
    return ",".join(str(first) if first == last else "%d-%d" % (first, last) for first, last in ranges)


def summarize_ranges(ranges, shown: int = 6) -> str:
    """format_ranges for reading: scattered slots (a move of the emptiest slots) are cut after `shown` ranges."""
    ranges = tuple(ranges)
    if len(ranges) <= shown:
        return format_ranges(ranges)
    return "%s,... (%d ranges, %d-%d)" % (format_ranges(ranges[:shown]), len(ranges), ranges[0][0], ranges[-1][1])
