"""RFC 1928 fragment reassembly, as pure logic with a controlled clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socks5client._codec import AddressType, UDPDatagram
from socks5client.udp import Reassembler


def frag(n: int, data: bytes, last: bool = False, host: str = "192.0.2.1") -> UDPDatagram:
    return UDPDatagram(n | (0x80 if last else 0), AddressType.IPV4, host, 53, data)


def test_standalone_datagram_passes_through() -> None:
    r = Reassembler()
    assert r.push(frag(0, b"whole"), 0.0) == (AddressType.IPV4, "192.0.2.1", 53, b"whole")


def test_in_order_sequence_is_delivered_once_complete() -> None:
    r = Reassembler()
    assert r.push(frag(1, b"ab"), 0.0) is None
    assert r.push(frag(2, b"cd"), 0.1) is None
    assert r.push(frag(3, b"ef", last=True), 0.2) == (AddressType.IPV4, "192.0.2.1", 53, b"abcdef")
    assert r.abandoned == 0


def test_single_fragment_sequence() -> None:
    r = Reassembler()
    assert r.push(frag(1, b"only", last=True), 0.0) == (AddressType.IPV4, "192.0.2.1", 53, b"only")


def test_out_of_order_fragment_restarts_the_queue() -> None:
    r = Reassembler()
    assert r.push(frag(2, b"cd"), 0.0) is None
    # 1 < 2: the RFC says reinitialise; the old sequence is abandoned.
    assert r.push(frag(1, b"ab"), 0.1) is None
    assert r.abandoned == 1
    assert r.push(frag(2, b"CD", last=True), 0.2) == (AddressType.IPV4, "192.0.2.1", 53, b"abCD")


def test_missing_fragment_abandons_the_sequence() -> None:
    r = Reassembler()
    assert r.push(frag(1, b"ab"), 0.0) is None
    assert r.push(frag(3, b"ef", last=True), 0.1) is None
    assert r.abandoned == 1


def test_restarted_sequence_is_delivered_from_the_new_start() -> None:
    r = Reassembler()
    r.push(frag(1, b"old1"), 0.0)
    r.push(frag(2, b"old2"), 0.0)
    assert r.push(frag(1, b"new1"), 0.0) is None
    assert r.push(frag(2, b"new2", last=True), 0.0) == (
        AddressType.IPV4,
        "192.0.2.1",
        53,
        b"new1new2",
    )
    assert r.abandoned == 1


def test_timer_expiry_abandons_the_queue() -> None:
    r = Reassembler(timeout=5.0)
    r.push(frag(1, b"ab"), 0.0)
    assert r.push(frag(2, b"cd", last=True), 5.5) is None
    # The expired sequence, then the lone tail that cannot complete.
    assert r.abandoned == 2


def test_sequence_within_the_timer_survives() -> None:
    r = Reassembler(timeout=5.0)
    r.push(frag(1, b"ab"), 0.0)
    assert r.push(frag(2, b"cd", last=True), 4.9) is not None


def test_timer_below_five_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="5 seconds"):
        Reassembler(timeout=1.0)


def test_standalone_datagram_mid_sequence_resets_and_is_delivered() -> None:
    r = Reassembler()
    r.push(frag(1, b"ab"), 0.0)
    assert r.push(frag(0, b"solo"), 0.1) == (AddressType.IPV4, "192.0.2.1", 53, b"solo")
    assert r.push(frag(2, b"cd", last=True), 0.2) is None
    assert r.abandoned >= 1


def test_end_marker_at_position_zero_is_dropped() -> None:
    r = Reassembler()
    assert r.push(UDPDatagram(0x80, AddressType.IPV4, "192.0.2.1", 53, b"x"), 0.0) is None


def test_oversized_sequence_is_abandoned() -> None:
    r = Reassembler(max_bytes=10)
    r.push(frag(1, b"x" * 8), 0.0)
    assert r.push(frag(2, b"y" * 8), 0.0) is None
    assert r.abandoned == 1
    assert r.push(frag(3, b"z", last=True), 0.0) is None


def test_source_of_the_sequence_is_reported() -> None:
    r = Reassembler()
    r.push(frag(1, b"a", host="192.0.2.9"), 0.0)
    assert r.push(frag(2, b"b", last=True, host="192.0.2.9"), 0.0) == (
        AddressType.IPV4,
        "192.0.2.9",
        53,
        b"ab",
    )


def test_fragment_from_another_remote_is_never_merged() -> None:
    # The relay forwards what two remotes sent; a fragment naming the other
    # one abandons the sequence instead of joining its bytes to it.
    r = Reassembler()
    assert r.push(frag(1, b"part-from-A|", host="192.0.2.1"), 0.0) is None
    assert r.push(frag(2, b"part-from-B", last=True, host="198.51.100.66"), 0.1) is None
    assert r.abandoned >= 1
    # Another port of the same host is another remote too.
    before = r.abandoned
    r.push(frag(1, b"a"), 0.2)
    assert r.push(UDPDatagram(0x82, AddressType.IPV4, "192.0.2.1", 54, b"b"), 0.3) is None
    assert r.abandoned > before


@given(st.lists(st.binary(min_size=0, max_size=50), min_size=1, max_size=127))
def test_any_in_order_sequence_reassembles_exactly(pieces: list[bytes]) -> None:
    r = Reassembler()
    result = None
    for i, piece in enumerate(pieces, start=1):
        result = r.push(frag(i, piece, last=i == len(pieces)), 0.0)
        if i < len(pieces):
            assert result is None
    assert result is not None
    assert result[3] == b"".join(pieces)
