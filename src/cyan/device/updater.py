"""A virtual device taking an over-the-air update, event by event, as a Photon does.

The file arrives through the protocol core (protocol/transfer.py checks each chunk's
CRC); at UpdateDone it is judged as Device OS 2.3.1 judges it before applying
(cyan.firmware.ota_validation_result: platform, slot, dependencies, CRC). A file it
refuses leaves the old firmware in place; one it accepts is applied and the device
restarts. Faults on purpose, for tests and demonstrations: lost chunks, a connection
that drops halfway, and devices that do not offer fast OTA.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from enum import Enum

from cyan.device.firmware import Firmware
from cyan.firmware import FirmwareError, OtaError, ota_validation_result, parse_module
from cyan.firmware.platforms import PHOTON
from cyan.protocol import DeviceConnection
from cyan.protocol.events import (
    ChunkArrived,
    Event,
    UpdateAborted,
    UpdateBeginRequested,
    UpdateDoneRequested,
)
from cyan.protocol.ota import UpdateParams

log = logging.getLogger("cyan.device")

# The Photon's OTA area (hal/src/photon/ota_module_bounds.c, module_ota): a bigger file
# cannot be taken, and the device answers UpdateBegin with 5.03.
OTA_AREA_BYTES = 0x40000
UPDATE_EVENTS = (UpdateBeginRequested, ChunkArrived, UpdateDoneRequested, UpdateAborted)


@dataclass(frozen=True, slots=True)
class OtaFaults:
    # The share of chunks lost on the way, 0 to 1, spread evenly (0.05: every twentieth
    # chunk to arrive), so a test of lost chunks always loses some.
    drop_chunks: float = 0.0
    disconnect_during_ota: bool = False  # lose the connection halfway through the first update
    slow_ota: bool = False  # do not offer fast OTA: every chunk is answered
    # Once this many bytes are in, take no more chunks until ``Updater.release`` (a device
    # busy writing flash): the update stays under way for as long as a test needs it.
    hold_at_bytes: int | None = None


class UpdateOutcome(Enum):
    RESTART = "restart"  # the update was applied: restart into it
    DISCONNECT = "disconnect"  # the fault on purpose: drop the connection now


class Updater:
    def __init__(self, firmware: Firmware, faults: OtaFaults, *, name: str) -> None:
        self.firmware = firmware
        self.faults = faults
        self.name = name
        # How much of a lost chunk the chunks so far have owed (faults.drop_chunks each).
        self._loss_owed = 0.0
        self._disconnect_armed = faults.disconnect_during_ota
        self.last_params: UpdateParams | None = None  # what the last UpdateBegin announced
        # Chunks that arrived while held (faults.hold_at_bytes), in order; None: not holding.
        self.held: list[ChunkArrived] | None = None
        self._hold_armed = faults.hold_at_bytes is not None

    @property
    def holding(self) -> bool:
        return self.held is not None

    def release(self, connection: DeviceConnection) -> None:
        """Take the chunks held back, and every later one as it comes."""
        held, self.held = self.held or [], None
        for event in held:
            connection.take_chunk(event)

    def handle(self, connection: DeviceConnection, event: Event) -> UpdateOutcome | None:
        if isinstance(event, UpdateBeginRequested):
            params = event.params
            if params.file_bytes > OTA_AREA_BYTES:
                log.warning("[%s] refusing an update of %d bytes", self.name, params.file_bytes)
                connection.refuse_update(event)
                return None
            connection.accept_update(event, fast=not self.faults.slow_ota)
            self.last_params = params
            mode = "fast OTA" if connection.update and connection.update.fast else "slow OTA"
            log.info(
                "[%s] update: %d bytes coming in chunks of %d (%s)",
                self.name,
                params.file_bytes,
                params.chunk_bytes,
                mode,
            )
        elif isinstance(event, ChunkArrived):
            return self._chunk(connection, event)
        elif isinstance(event, UpdateDoneRequested):
            return self._done(connection, event)
        elif isinstance(event, UpdateAborted):
            self.held = None
            log.warning("[%s] the server aborted the update; keeping the old firmware", self.name)
        return None

    def _chunk(self, connection: DeviceConnection, event: ChunkArrived) -> UpdateOutcome | None:
        receiver = connection.update
        if receiver is None:
            return None
        if self.held is not None:
            self.held.append(event)
            return None
        hold_at = self.faults.hold_at_bytes
        if self._hold_armed and hold_at is not None and receiver.received_bytes >= hold_at:
            self._hold_armed = False
            self.held = [event]
            log.info("[%s] holding the update at %d bytes", self.name, receiver.received_bytes)
            return None
        if self._disconnect_armed and receiver.received_bytes * 2 >= receiver.params.file_bytes:
            self._disconnect_armed = False
            log.warning("[%s] losing the connection halfway through the update", self.name)
            return UpdateOutcome.DISCONNECT
        if self._chunk_lost():
            if receiver.fast:
                return None  # lost: it will be missing at UpdateDone
            # In slow mode the device answers every chunk: it arrived damaged.
            damaged = dataclasses.replace(event.chunk, data=bytes(len(event.chunk.data)))
            event = dataclasses.replace(event, chunk=damaged)
        connection.take_chunk(event)
        return None

    def _chunk_lost(self) -> bool:
        # Evenly rather than at random: a random 5% of 59 chunks is no chunk at all one
        # time in twenty, and a fault that sometimes does not happen reproduces nothing.
        self._loss_owed += self.faults.drop_chunks
        if self._loss_owed < 1.0:
            return False
        self._loss_owed -= 1.0
        return True

    def _done(
        self, connection: DeviceConnection, event: UpdateDoneRequested
    ) -> UpdateOutcome | None:
        result = connection.answer_update_done(event, self._validate)
        if result is None:
            return None  # chunks missing: the core asked for them again
        if result:
            why = OtaError(result).message if result in set(OtaError) else f"error {result}"
            log.warning("[%s] refusing the new firmware (%s); keeping the old one", self.name, why)
            return None
        return UpdateOutcome.RESTART

    def _validate(self, image: bytes) -> int:
        result = ota_validation_result(image, PHOTON, self.firmware.installed)
        if result == 0:
            try:
                module = parse_module(image)
            except FirmwareError as exc:  # the device's checks passed, ours did not: refuse
                log.warning("[%s] %s", self.name, exc.message)
                return int(OtaError.OTA_VALIDATION_FAILED)
            self.firmware.apply(module)
            log.info(
                "[%s] update applied: %s v%d; restarting", self.name, module.name, module.version
            )
        return result
