"""Every stage has a cause and a fix, and the sentence keeps the connection's own reason."""

from __future__ import annotations

import pytest

from cyan.diagnose import diagnose, diagnose_device_side
from cyan.protocol import ProtocolError, Stage


@pytest.mark.parametrize("stage", list(Stage))
def test_every_stage_has_a_cause_and_a_fix(stage: Stage) -> None:
    diagnosis = diagnose(ProtocolError(stage, "the raw reason"))
    assert diagnosis.stage is stage
    assert len(diagnosis.cause) > 20
    assert len(diagnosis.fix) > 20
    sentence = diagnosis.sentence()
    assert "the raw reason" in sentence
    assert "Fix: " in sentence


def test_the_seed_threads_cause_points_at_dns() -> None:
    # The Photon in shared/seed blinked cyan because DHCP handed out DNS 0.0.0.0.
    diagnosis = diagnose(ProtocolError(Stage.DNS, "device.spark.io did not resolve"))
    assert "DNS 0.0.0.0" in diagnosis.cause
    assert "cyan keys server --host THIS-SERVER-IP" in diagnosis.fix


def test_wrong_server_key_says_to_send_this_servers_key() -> None:
    assert "particle keys server" in diagnose(ProtocolError(Stage.HANDSHAKE_DECRYPT, "x")).fix
    assert "keys send" in diagnose(ProtocolError(Stage.UNKNOWN_DEVICE, "x")).fix


@pytest.mark.parametrize("stage", list(Stage))
def test_every_stage_has_a_device_side_cause_and_fix(stage: Stage) -> None:
    diagnosis = diagnose_device_side(ProtocolError(stage, "the raw reason"))
    assert len(diagnosis.cause) > 20
    assert len(diagnosis.fix) > 20


def test_device_side_decrypt_blames_the_registered_key_not_the_server_key() -> None:
    # The server's handshake-decrypt means the device holds another server's key; the
    # device's means the server holds another device key: opposite fixes.
    server_view = diagnose(ProtocolError(Stage.HANDSHAKE_DECRYPT, "x"))
    device_view = diagnose_device_side(ProtocolError(Stage.HANDSHAKE_DECRYPT, "x"))
    assert "cyan keys server" in server_view.fix
    assert "cyan keys doctor" in device_view.fix
    assert "cyan keys server" not in device_view.fix


def test_a_refused_handshake_points_at_the_servers_own_record() -> None:
    assert "cyan device why" in diagnose_device_side(ProtocolError(Stage.REFUSED, "x")).fix
