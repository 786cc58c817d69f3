"""Confirmable messages seen lately, so that a retransmission is acknowledged, not redone.

A peer that misses our ACK sends the same CON again with the same message id (RFC 7252
§4.2); one that means harm sends it many times. Either way the message is acted on once
and every copy gets the answer the first one got (§4.5: "acknowledge each duplicate
copy ..., but process any request ... only once"). One connection is one peer, so the
message id alone names the exchange.
"""

from __future__ import annotations

from cyan.protocol.coap import CoapMessage, CoapType

# RFC 7252 §4.8.2 EXCHANGE_LIFETIME with the default transmission parameters.
EXCHANGE_LIFETIME_S = 247.0
# A device's message ids count up by one per message, so a repeat is almost always one of
# the last few; a bound keeps the memory per connection small under a flood of new ids.
REMEMBERED = 16


class RecentExchanges:
    """The last ``REMEMBERED`` confirmable message ids from the peer, with our replies."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # message id -> (when it arrived, the ACK or RST we sent for it, if any yet)
        self._seen: dict[int, tuple[float, CoapMessage | None]] = {}

    def repeat(self, message: CoapMessage, now: float) -> tuple[bool, CoapMessage | None]:
        """(True, our earlier reply or None) for a retransmission; else remember it."""
        if message.type is not CoapType.CON:
            return False, None
        seen = self._seen.get(message.message_id)
        if seen is not None and now - seen[0] < EXCHANGE_LIFETIME_S:
            return True, seen[1]
        self._seen.pop(message.message_id, None)
        if len(self._seen) >= REMEMBERED:
            del self._seen[next(iter(self._seen))]  # the oldest: dicts keep their order
        self._seen[message.message_id] = (now, None)
        return False, None

    def replied(self, message: CoapMessage) -> None:
        """Our ACK or RST going out: kept as the answer to a repeat of that message id."""
        if message.type not in (CoapType.ACK, CoapType.RST):
            return
        seen = self._seen.get(message.message_id)
        if seen is not None and seen[1] is None:
            self._seen[message.message_id] = (seen[0], message)
