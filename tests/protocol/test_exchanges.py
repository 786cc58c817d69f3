"""protocol/exchanges.py: a repeated confirmable message is answered again, not redone."""

from __future__ import annotations

from cyan.protocol.coap import CoapCode, CoapMessage, CoapType
from cyan.protocol.exchanges import EXCHANGE_LIFETIME_S, REMEMBERED, RecentExchanges
from cyan.protocol.messages import empty_ack


def con(message_id: int) -> CoapMessage:
    return CoapMessage(CoapType.CON, CoapCode.POST, message_id, b"", (), b"")


def test_a_repeat_gets_the_reply_the_first_copy_got() -> None:
    exchanges = RecentExchanges()
    assert exchanges.repeat(con(5), 0.0) == (False, None)
    assert exchanges.repeat(con(5), 1.0) == (True, None)  # not answered yet: nothing to send
    exchanges.replied(empty_ack(5))
    assert exchanges.repeat(con(5), 2.0) == (True, empty_ack(5))
    assert exchanges.repeat(con(6), 2.0) == (False, None)


def test_non_confirmable_messages_are_never_repeats() -> None:
    exchanges = RecentExchanges()
    non = CoapMessage(CoapType.NON, CoapCode.POST, 5, b"", (), b"")
    assert exchanges.repeat(non, 0.0) == (False, None)
    assert exchanges.repeat(non, 0.0) == (False, None)


def test_an_id_is_new_again_after_the_exchange_lifetime() -> None:
    exchanges = RecentExchanges()
    exchanges.repeat(con(5), 0.0)
    assert exchanges.repeat(con(5), EXCHANGE_LIFETIME_S - 1)[0]
    assert not exchanges.repeat(con(5), EXCHANGE_LIFETIME_S + 1)[0]


def test_only_the_latest_ids_are_remembered() -> None:
    exchanges = RecentExchanges()
    for message_id in range(REMEMBERED + 1):
        exchanges.repeat(con(message_id), 0.0)
    assert not exchanges.repeat(con(0), 0.0)[0]  # the oldest was let go
    assert exchanges.repeat(con(REMEMBERED), 0.0)[0]
