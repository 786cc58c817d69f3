"""Every stage has a cause and a fix, and the sentence keeps the connection's own reason."""

from __future__ import annotations

import pytest

from cyan.diagnose import diagnose
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
    assert "--host IP" in diagnosis.fix


def test_wrong_server_key_says_to_send_this_servers_key() -> None:
    assert "particle keys server" in diagnose(ProtocolError(Stage.HANDSHAKE_DECRYPT, "x")).fix
    assert "keys send" in diagnose(ProtocolError(Stage.UNKNOWN_DEVICE, "x")).fix
