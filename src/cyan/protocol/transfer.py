"""The two ends of one chunked update, as state machines with no I/O and no clock.

``UpdateSender`` (server) decides what to send next and when to give up; ``UpdateReceiver``
(device) keeps the chunks and knows which are missing. The connections (server.py,
device.py) turn their decisions into messages (ota.py). Time comes in as ``now``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, StrEnum

from cyan.protocol.ota import MAX_MISSED_PER_MESSAGE, ChunkInfo, UpdateParams, chunk_data


class UpdateState(StrEnum):
    """Where an update stands: the one vocabulary of the sender, the API and the store."""

    BEGIN_SENT = "begin_sent"  # waiting for UpdateReady
    SENDING = "sending"  # chunks going out (and, after ChunkMissed, going out again)
    DONE_SENT = "done_sent"  # waiting for the answer to UpdateDone
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# What the sender was doing, for the sentence of a failure ("while waiting for …").
DOING = {
    UpdateState.BEGIN_SENT: "waiting for UpdateReady",
    UpdateState.SENDING: "sending chunks",
    UpdateState.DONE_SENT: "waiting for the UpdateDone answer",
}


class UpdateInput(Enum):
    RECV_READY = "UpdateReady"
    RECV_REFUSAL = "a refusal of UpdateBegin"
    RECV_MISSED = "ChunkMissed"
    ALL_SENT = "every chunk out: UpdateDone sent"
    RECV_DONE_OK = "UpdateDone accepted"
    RECV_DONE_REFUSED = "the file refused at UpdateDone"
    GIVE_UP = "no answer, a lost connection, or an abort"


# (state, input) -> next state; a pair not here changes nothing (a repeated or late
# answer), as h2 and handshake.py keep every transition in one table.
TRANSITIONS: dict[tuple[UpdateState, UpdateInput], UpdateState] = {
    (UpdateState.BEGIN_SENT, UpdateInput.RECV_READY): UpdateState.SENDING,
    (UpdateState.BEGIN_SENT, UpdateInput.RECV_REFUSAL): UpdateState.FAILED,
    (UpdateState.SENDING, UpdateInput.RECV_MISSED): UpdateState.SENDING,
    (UpdateState.DONE_SENT, UpdateInput.RECV_MISSED): UpdateState.SENDING,
    (UpdateState.SENDING, UpdateInput.ALL_SENT): UpdateState.DONE_SENT,
    (UpdateState.DONE_SENT, UpdateInput.RECV_DONE_OK): UpdateState.SUCCEEDED,
    (UpdateState.DONE_SENT, UpdateInput.RECV_DONE_REFUSED): UpdateState.FAILED,
    (UpdateState.BEGIN_SENT, UpdateInput.GIVE_UP): UpdateState.FAILED,
    (UpdateState.SENDING, UpdateInput.GIVE_UP): UpdateState.FAILED,
    (UpdateState.DONE_SENT, UpdateInput.GIVE_UP): UpdateState.FAILED,
}


class Resend(StrEnum):
    """What ``UpdateSender.timed_out`` says to send again."""

    BEGIN = "begin"
    CHUNK = "chunk"  # the slow-mode chunk in flight
    DONE = "done"


@dataclass(frozen=True, slots=True)
class UpdateTimeouts:
    # spark-protocol's Flasher waits 6 s for UpdateReady; a Photon erasing 128 KB of flash
    # before it answers can take longer.
    ready_s: float = 15.0
    answer_s: float = 10.0  # a ChunkReceived (slow mode), or the UpdateDone answer
    retries: int = 3  # resends of one message before the update fails


class UpdateSender:
    """Server side. Feed it what the device answers; ask it what to send next."""

    def __init__(
        self,
        data: bytes,
        *,
        chunk_bytes: int,
        offer_fast: bool,
        timeouts: UpdateTimeouts | None = None,
    ) -> None:
        self.data = data
        self.params = UpdateParams(offer_fast, chunk_bytes, len(data))
        self.timeouts = timeouts or UpdateTimeouts()
        self.state = UpdateState.BEGIN_SENT
        self.fast = False
        self.failure: str | None = None
        self.validation_result: int | None = None
        self.chunks_resent = 0
        self._queue: deque[int] = deque()
        self._sent = bytearray(self.params.chunk_count)  # 1: sent at least once
        self._in_flight: int | None = None  # slow mode: the chunk awaiting its ChunkReceived
        # When the current wait ends; None: it starts at the next timed_out(now).
        self._deadline: float | None = None
        self._sends = 1  # UpdateBegin goes out as the sender is made

    # -- progress ---------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return len(self.data)

    @property
    def bytes_sent(self) -> int:
        """Bytes of the file sent at least once (resends not counted twice)."""
        return _file_bytes_in(self._sent, self.params)

    @property
    def finished(self) -> bool:
        return self.state in (UpdateState.SUCCEEDED, UpdateState.FAILED)

    # -- what the device said ---------------------------------------------------------------

    def ready(self, fast: bool) -> None:
        if not self._move(UpdateInput.RECV_READY):
            return  # a repeated UpdateReady
        self.fast = fast and self.params.fast
        self._queue.extend(range(self.params.chunk_count))
        self._restart_wait()

    def refused(self, why: str) -> None:
        self._fail(f"the device refused the update: {why}", UpdateInput.RECV_REFUSAL)

    def chunk_answer(self, ok: bool) -> None:
        """Slow mode: ChunkReceived for the chunk in flight (4.00: its CRC did not match)."""
        if self.fast or self._in_flight is None or self.state is not UpdateState.SENDING:
            return
        index, self._in_flight = self._in_flight, None
        if not ok:
            self._queue.appendleft(index)
            self.chunks_resent += 1
        self._restart_wait()

    def missed(self, indices: list[int]) -> None:
        """ChunkMissed: send these again, then UpdateDone again."""
        if not self._move(UpdateInput.RECV_MISSED):
            return
        wanted = [i for i in dict.fromkeys(indices) if 0 <= i < self.params.chunk_count]
        fresh = [i for i in wanted if i not in self._queue]
        self._queue.extend(fresh)
        self.chunks_resent += len(fresh)
        self._restart_wait()

    def done_answer(self, ok: bool, result: int | None) -> None:
        """The ACK to UpdateDone: 2.04 with the validation result, or 4.00 (chunks missing)."""
        if self.state is not UpdateState.DONE_SENT:
            return
        if not ok:
            # The ChunkMissed list follows; wait for it.
            self._restart_wait()
            return
        self.validation_result = result
        if result:
            self._fail(
                f"the device received the whole file but refused it (module validation "
                f"result {result}): it stays on its old firmware",
                UpdateInput.RECV_DONE_REFUSED,
            )
        else:
            self._move(UpdateInput.RECV_DONE_OK)

    def disconnected(self) -> None:
        if not self.finished:
            self._fail(f"the device disconnected while the update was {DOING[self.state]}")

    def abort(self, why: str) -> None:
        self._fail(why)

    # -- what to send -------------------------------------------------------------------------

    def next_chunks(self, limit: int) -> list[int]:
        """Up to ``limit`` chunk indices to send now (one at a time in slow mode)."""
        if self.state is not UpdateState.SENDING or limit <= 0:
            return []
        if not self.fast:
            if self._in_flight is not None or not self._queue:
                return []
            self._in_flight = self._queue.popleft()
            self._mark_sent(self._in_flight)
            self._restart_wait()
            return [self._in_flight]
        taken = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
        for index in taken:
            self._mark_sent(index)
        return taken

    def chunk(self, index: int) -> bytes:
        return chunk_data(self.data, index, self.params.chunk_bytes)

    def done_due(self) -> bool:
        """True once: every chunk is out (and, in slow mode, acknowledged); send UpdateDone."""
        idle = not self._queue and self._in_flight is None
        if self.state is not UpdateState.SENDING or not idle:
            return False
        self._move(UpdateInput.ALL_SENT)
        self._restart_wait()
        return True

    def timed_out(self, now: float) -> Resend | None:
        """What to send again after a silence, or None. Fails the update when out of tries
        (``Resend.CHUNK``: the slow-mode chunk in flight, ``in_flight``)."""
        waiting = self.state is not UpdateState.SENDING or self._in_flight is not None
        if self.finished or not waiting:
            return None
        begin = self.state is UpdateState.BEGIN_SENT
        span = self.timeouts.ready_s if begin else self.timeouts.answer_s
        if self._deadline is None:
            self._deadline = now + span
        if now < self._deadline:
            return None
        if self._sends > self.timeouts.retries:
            self._fail(f"no answer from the device while {DOING[self.state]}")
            return None
        self._sends += 1
        self._deadline = now + span
        if self.state is UpdateState.BEGIN_SENT:
            return Resend.BEGIN
        if self.state is UpdateState.DONE_SENT:
            return Resend.DONE
        self.chunks_resent += 1
        return Resend.CHUNK

    @property
    def chunks_waiting(self) -> int:
        """Chunks queued to go out now (fast mode; slow mode sends one at a time)."""
        return len(self._queue) if self.state is UpdateState.SENDING else 0

    @property
    def in_flight(self) -> int | None:
        return self._in_flight

    def _restart_wait(self) -> None:
        """A new wait for an answer to something just sent once."""
        self._deadline, self._sends = None, 1

    def _mark_sent(self, index: int) -> None:
        self._sent[index] = 1

    def _move(self, given: UpdateInput) -> bool:
        """Take the table's transition for ``given``; False (nothing changes) if none."""
        following = TRANSITIONS.get((self.state, given))
        if following is None:
            return False
        self.state = following
        return True

    def _fail(self, why: str, given: UpdateInput = UpdateInput.GIVE_UP) -> None:
        if self._move(given):
            self.failure = why


def _file_bytes_in(chunks: bytearray, params: UpdateParams) -> int:
    """The file bytes the marked chunks (1 per chunk index) cover: the last chunk counts only
    the bytes of the file it holds, not the zero padding that fills it on the wire."""
    size, last = params.chunk_bytes, len(chunks) - 1
    covered = sum(chunks) * size
    if last >= 0 and chunks[last]:
        covered -= (last + 1) * size - params.file_bytes
    return covered


class UpdateReceiver:
    """Device side: the file as it arrives, chunk by chunk."""

    def __init__(self, params: UpdateParams, fast: bool) -> None:
        self.params = params
        self.fast = fast
        self._image = bytearray(params.chunk_count * params.chunk_bytes)
        self._have = bytearray(params.chunk_count)
        self.next_index = 0  # slow mode: where the next good chunk goes

    def place(self, info: ChunkInfo) -> int | None:
        """Where this chunk goes, or None when it is out of range or (fast) a duplicate."""
        index = info.index if self.fast and info.index is not None else self.next_index
        if index >= self.params.chunk_count or (self.fast and self._have[index]):
            return None
        return index

    def store(self, index: int, data: bytes) -> None:
        start = index * self.params.chunk_bytes
        piece = data[: self.params.chunk_bytes]
        self._image[start : start + len(piece)] = piece
        self._have[index] = 1
        if not self.fast:
            self.next_index = index + 1

    def missing(self, limit: int = MAX_MISSED_PER_MESSAGE) -> list[int]:
        found = []
        for index, have in enumerate(self._have):
            if not have:
                found.append(index)
                if len(found) == limit:
                    break
        return found

    @property
    def complete(self) -> bool:
        return all(self._have)

    @property
    def received_bytes(self) -> int:
        """Bytes of the file held so far."""
        return _file_bytes_in(self._have, self.params)

    def image(self) -> bytes:
        return bytes(self._image[: self.params.file_bytes])
