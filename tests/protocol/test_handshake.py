"""The RSA handshake (protocol.md §2, §7), checked from outside with fixed randomness.

The server's random source is scripted (nonce, session bytes, Hello message id), so the
wire can be checked against values written here: the device's block is opened with the
server key, the reply with the device key, and the signature with Python integers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import DeviceConnection, ServerConnection, crypto
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.events import (
    DeviceIdentified,
    HelloReceived,
    NonceReceived,
    ServerHelloReceived,
    SessionStarted,
)
from cyan.protocol.handshake import (
    DEVICE_STAGE,
    SERVER_STAGE,
    DeviceHandshake,
    DeviceInput,
    DeviceState,
    ServerHandshake,
    ServerInput,
    ServerState,
    SessionMaterial,
)
from tests import vectors
from tests.protocol.pair import DEVICE_ID, FIXED_CLOCK, PHOTON_HELLO, make_pair, scripted
from tests.protocol.wire import (
    hmac_sha1,
    open_frames,
    open_signature,
    raw_type1_signature,
    raw_type2_encrypt,
    seal_frames,
)

NONCE = bytes.fromhex(
    "4e4f4e43452d303132333435363738396162636465666768696a6b6c6d6e6f70"  # "NONCE-0123456789ab…"
    "7172737475767778"
)
SESSION = bytes.fromhex(
    "2b7e151628aed2a6abf7158809cf4f3c"  # AES key
    "000102030405060708090a0b0c0d0e0f"  # IV
    "3412a1a2a3a4a5a6"  # salt: message id seed 34 12 -> 0x1234 little-endian
)
SERVER_HELLO_ID = bytes.fromhex("beef")
DEVICE_ID_BYTES = bytes.fromhex(DEVICE_ID)
PHOTON_HELLO_PAYLOAD = bytes.fromhex("0006 0003 00 36 0006")

RandomBytes = Callable[[int], bytes]


def server_random(session: bytes = SESSION) -> RandomBytes:
    return scripted(NONCE, session, SERVER_HELLO_ID)


def spki(key: crypto.RsaPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def new_server(random_bytes: RandomBytes | None = None) -> ServerConnection:
    return ServerConnection(
        vectors.server_key(),
        random_bytes=random_bytes or server_random(),
        clock=lambda: FIXED_CLOCK,
    )


def new_device(
    *,
    key_index: int = 0,
    server_public: crypto.RsaPublicKey | None = None,
    send_public_key: bool = True,
) -> DeviceConnection:
    return DeviceConnection(
        DEVICE_ID,
        vectors.device_key(key_index),
        server_public or vectors.server_key().public_key(),
        PHOTON_HELLO,
        random_bytes=scripted(),  # a device draws no randomness of its own
        clock=lambda: FIXED_CLOCK,
        send_public_key=send_public_key,
    )


def hand_made_reply(
    session: bytes, device_public: crypto.RsaPublicKey, signer: crypto.RsaPrivateKey, filler: int
) -> bytes:
    """C ‖ G as protocol.md §2 step 4 describes, built without cyan's code."""
    ciphertext = raw_type2_encrypt(device_public, session, filler)
    return ciphertext + raw_type1_signature(signer, hmac_sha1(session, ciphertext))


# -- the whole exchange, byte by byte ---------------------------------------------------------


def test_photon_handshake_on_the_wire() -> None:
    server, device = new_server(), new_device()
    server_public = vectors.server_key().public_key()

    # Step 2: 40 bytes of nonce, raw.
    server.start()
    nonce = server.data_to_send()
    assert nonce == NONCE

    # Step 3: 256 bytes = RSA(server key, nonce ‖ id ‖ 162-byte SPKI).
    device.receive_data(nonce)
    assert device.events_received() == [NonceReceived()]
    block = device.data_to_send()
    assert len(block) == 256
    plaintext = vectors.server_key().decrypt(block, padding.PKCS1v15())
    assert len(plaintext) == 214
    assert plaintext == NONCE + DEVICE_ID_BYTES + spki(vectors.device_key(0))

    server.receive_data(block)
    assert server.events_received() == [DeviceIdentified(DEVICE_ID, spki(vectors.device_key(0)))]
    assert server.data_to_send() == b""  # nothing goes out before the owner accepts

    # Step 4: 384 bytes = RSA(device key, S) ‖ raw type-1 signature of HMAC-SHA1(S, C).
    server.accept_device(vectors.device_key(0).public_key())
    reply = server.data_to_send()
    assert len(reply) == 384
    ciphertext, signature = reply[:128], reply[128:]
    assert vectors.device_key(0).decrypt(ciphertext, padding.PKCS1v15()) == SESSION
    assert open_signature(server_public, signature) == (
        b"\x00\x01" + b"\xff" * 233 + b"\x00" + hmac_sha1(SESSION, ciphertext)
    )

    # Step 5: the device's Hello, id = little-endian S[32:34] + 1 (protocol.md §7).
    device.receive_data(reply)
    assert device.events_received() == [SessionStarted()]
    hello_frame = device.data_to_send()
    device_plain, _ = open_frames(hello_frame, SESSION[:16], SESSION[16:32])
    assert device_plain == [bytes.fromhex("50 02 12 35 b1 68 ff") + PHOTON_HELLO_PAYLOAD]

    server.receive_data(hello_frame)
    assert server.events_received() == [HelloReceived(DEVICE_ID, PHOTON_HELLO)]
    server_hello = server.data_to_send()
    server_plain, _ = open_frames(server_hello, SESSION[:16], SESSION[16:32])
    assert server_plain == [bytes.fromhex("50 02") + SERVER_HELLO_ID + bytes.fromhex("b1 68")]

    device.receive_data(server_hello)
    assert device.events_received() == [ServerHelloReceived()]
    assert device.server_hello_received
    assert server.established
    assert device.established


def test_core_handshake_sends_52_bytes_and_no_key() -> None:
    server, device = new_server(), new_device(send_public_key=False)
    server.start()
    device.receive_data(server.data_to_send())
    block = device.data_to_send()

    plaintext = vectors.server_key().decrypt(block, padding.PKCS1v15())
    assert plaintext == NONCE + DEVICE_ID_BYTES
    assert len(plaintext) == 52

    server.receive_data(block)
    assert server.events_received() == [DeviceIdentified(DEVICE_ID, None)]
    server.accept_device(vectors.device_key(0).public_key())
    device.receive_data(server.data_to_send())
    server.receive_data(device.data_to_send())
    assert server.events_received() == [HelloReceived(DEVICE_ID, PHOTON_HELLO)]


def test_device_accepts_a_hand_made_reply() -> None:
    # The device side against protocol.md alone: RSA and signature built here.
    handshake = DeviceHandshake(DEVICE_ID, vectors.device_key(0), vectors.server_key().public_key())
    handshake.identify(NONCE)
    reply = hand_made_reply(
        SESSION, vectors.device_key(0).public_key(), vectors.server_key(), filler=7
    )

    material = handshake.read_session_key(reply)

    assert material.raw == SESSION
    assert (material.aes_key, material.iv) == (SESSION[:16], SESSION[16:32])
    assert handshake.state is DeviceState.KEYED


def test_server_accepts_a_hand_made_device_block() -> None:
    handshake = ServerHandshake(vectors.server_key(), scripted(NONCE, SESSION))
    handshake.nonce()
    offered = spki(vectors.device_key(1))
    block = (
        vectors.server_key()
        .public_key()
        .encrypt(NONCE + DEVICE_ID_BYTES + offered, padding.PKCS1v15())
    )

    assert handshake.read_device_block(block) == DEVICE_ID
    assert handshake.offered_key_der == offered
    reply, material = handshake.session_key_reply(vectors.device_key(1).public_key())
    assert material.raw == SESSION
    assert vectors.device_key(1).decrypt(reply[:128], padding.PKCS1v15()) == SESSION


@pytest.mark.parametrize(
    ("salt_start", "hello_id"),
    [
        (b"\x34\x12", 0x1235),  # little-endian 0x1234, not big-endian 0x3412
        (b"\x00\x00", 0x0001),
        (b"\xfe\xff", 0xFFFF),
        (b"\xff\xff", 0x0000),  # wraps at 65536
    ],
)
def test_device_message_ids_start_from_the_little_endian_salt(
    salt_start: bytes, hello_id: int
) -> None:
    session = SESSION[:32] + salt_start + SESSION[34:]
    assert SessionMaterial(session).first_message_id == int.from_bytes(salt_start, "little")
    pair = make_pair(server_random=server_random(session))

    pair.pump()
    pair.device.ping()
    pair.pump()

    ciphertext_stream = bytes(pair.to_server[256:])
    device_plain, _ = open_frames(ciphertext_stream, session[:16], session[16:32])
    assert device_plain[0][:6] == bytes.fromhex("50 02") + hello_id.to_bytes(2, "big") + b"\xb1\x68"
    # The next message counts on from there.
    ping_id = (hello_id + 1) % 0x10000
    assert device_plain[1] == bytes.fromhex("40 00") + ping_id.to_bytes(2, "big")


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_both_ends_keep_their_aes_state_in_step(chunk: int | None) -> None:
    pair = make_pair(server_random=server_random())
    pair.pump(chunk)
    for _ in range(5):  # pings both ways, each answered: IVs advance in both directions
        pair.server.ping()
        pair.device.ping()
        pair.pump(chunk)

    # An eavesdropper with S, chaining IVs by hand, reads every frame of both directions.
    server_plain, server_iv = open_frames(bytes(pair.to_device[424:]), SESSION[:16], SESSION[16:32])
    device_plain, device_iv = open_frames(bytes(pair.to_server[256:]), SESSION[:16], SESSION[16:32])
    assert len(server_plain) == 1 + 5 + 5  # Hello, 5 pings, 5 ACKs
    assert len(device_plain) == 1 + 5 + 5
    # And a frame sealed by hand with the next IV is understood by each end.
    ping_to_device, _ = seal_frames([bytes.fromhex("40 00 77 77")], SESSION[:16], server_iv)
    ping_to_server, _ = seal_frames([bytes.fromhex("40 00 66 66")], SESSION[:16], device_iv)
    pair.device.receive_data(ping_to_device)
    pair.server.receive_data(ping_to_server)
    up, _ = open_frames(pair.device.data_to_send(), SESSION[:16], device_iv)
    down, _ = open_frames(pair.server.data_to_send(), SESSION[:16], server_iv)
    assert up == [bytes.fromhex("60 00 77 77")]
    assert down == [bytes.fromhex("60 00 66 66")]


# -- bytes that arrive together --------------------------------------------------------------


def test_server_reads_a_hello_that_arrives_with_the_device_block() -> None:
    # A device's Hello can share a read with its 256-byte block (style.md §1); the server
    # must keep it until accept_device() starts the channel. Same script, same S: the
    # Hello frame recorded in a first run is what the device would send in the second.
    first = make_pair(server_random=server_random())
    first.pump()
    hello_frame = bytes(first.to_server[256:])

    server, device = new_server(), new_device()
    server.start()
    device.receive_data(server.data_to_send())
    server.receive_data(device.data_to_send() + hello_frame)
    assert [type(e) for e in server.events_received()] == [DeviceIdentified]

    server.accept_device(vectors.device_key(0).public_key())

    assert server.events_received() == [HelloReceived(DEVICE_ID, PHOTON_HELLO)]
    out = server.data_to_send()
    server_plain, _ = open_frames(out[384:], SESSION[:16], SESSION[16:32])
    assert server_plain == [bytes.fromhex("50 02 be ef b1 68")]


def test_device_reads_frames_that_arrive_with_the_session_key() -> None:
    server, device = new_server(), new_device()
    server.start()
    device.receive_data(server.data_to_send())
    server.receive_data(device.data_to_send())
    server.accept_device(vectors.device_key(0).public_key())
    reply = server.data_to_send()
    early, _ = seal_frames(
        [bytes.fromhex("50 02 be ef b1 68"), bytes.fromhex("40 00 00 09")],
        SESSION[:16],
        SESSION[16:32],
    )

    device.receive_data(reply + early)

    assert device.events_received() == [NonceReceived(), SessionStarted(), ServerHelloReceived()]
    out, _ = open_frames(device.data_to_send(), SESSION[:16], SESSION[16:32])
    assert out == [  # our Hello first, then the ACK of the early ping
        bytes.fromhex("50 02 12 35 b1 68 ff") + PHOTON_HELLO_PAYLOAD,
        bytes.fromhex("60 00 00 09"),
    ]


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_handshake_survives_any_split_of_the_stream(data: st.DataObject) -> None:
    server, device = new_server(), new_device()
    server.start()

    def deliver(payload: bytes, end: ServerConnection | DeviceConnection) -> None:
        cuts = sorted(data.draw(st.sets(st.integers(1, max(len(payload) - 1, 1)), max_size=6)))
        for a, b in itertools.pairwise([0, *cuts, len(payload)]):
            end.receive_data(payload[a:b])

    deliver(server.data_to_send(), device)
    deliver(device.data_to_send(), server)
    assert [type(e) for e in server.events_received()] == [DeviceIdentified]
    server.accept_device(vectors.device_key(0).public_key())
    deliver(server.data_to_send(), device)
    deliver(device.data_to_send(), server)
    deliver(server.data_to_send(), device)

    assert server.events_received() == [HelloReceived(DEVICE_ID, PHOTON_HELLO)]
    assert device.events_received() == [NonceReceived(), SessionStarted(), ServerHelloReceived()]


# -- failures and their stages ---------------------------------------------------------------


def _identify(server: ServerConnection, device: DeviceConnection) -> bytes:
    server.start()
    device.receive_data(server.data_to_send())
    return device.data_to_send()


def test_device_holding_another_server_key_fails_handshake_decrypt() -> None:
    server = new_server()
    device = new_device(server_public=vectors.other_server_key().public_key())
    block = _identify(server, device)

    with pytest.raises(ProtocolError) as caught:
        server.receive_data(block)

    assert caught.value.stage is Stage.HANDSHAKE_DECRYPT


@pytest.mark.parametrize(
    "plaintext",
    [
        bytes(40) + DEVICE_ID_BYTES,  # another nonce (an answer to an older connection)
        NONCE + DEVICE_ID_BYTES[:11],  # 51 bytes: shorter than nonce + id
        NONCE[:39],
    ],
)
def test_device_block_with_wrong_content_fails_handshake_decrypt(plaintext: bytes) -> None:
    server = new_server()
    server.start()
    block = vectors.server_key().public_key().encrypt(plaintext, padding.PKCS1v15())

    with pytest.raises(ProtocolError) as caught:
        server.receive_data(block)

    assert caught.value.stage is Stage.HANDSHAKE_DECRYPT


@pytest.mark.parametrize("junk", [b"\x00" * 256, b"\xff" * 256, bytes(range(256))])
def test_device_block_of_junk_fails_handshake_decrypt(junk: bytes) -> None:
    server = new_server()
    server.start()

    with pytest.raises(ProtocolError) as caught:
        server.receive_data(junk)

    assert caught.value.stage is Stage.HANDSHAKE_DECRYPT


def test_reply_signed_by_another_server_key_fails_server_key() -> None:
    server, device = new_server(), new_device()
    server.receive_data(_identify(server, device))
    server.accept_device(vectors.device_key(0).public_key())
    ciphertext = server.data_to_send()[:128]
    forged = raw_type1_signature(vectors.other_server_key(), hmac_sha1(SESSION, ciphertext))

    with pytest.raises(ProtocolError) as caught:
        device.receive_data(ciphertext + forged)

    assert caught.value.stage is Stage.SERVER_KEY


def test_reply_with_a_damaged_signature_fails_server_key() -> None:
    server, device = new_server(), new_device()
    server.receive_data(_identify(server, device))
    server.accept_device(vectors.device_key(0).public_key())
    reply = bytearray(server.data_to_send())
    reply[300] ^= 0x40

    with pytest.raises(ProtocolError) as caught:
        device.receive_data(bytes(reply))

    assert caught.value.stage is Stage.SERVER_KEY


@pytest.mark.parametrize("filler", range(5))
def test_session_key_for_another_device_key_fails_handshake_decrypt(filler: int) -> None:
    # The server has device key 1 on file; the device holds key 0. The signature is
    # genuine, so only the decryption can be what went wrong (protocol.md §5.2, orange).
    device = new_device(key_index=0)
    device.receive_data(NONCE)
    device.data_to_send()
    reply = hand_made_reply(
        SESSION, vectors.device_key(1).public_key(), vectors.server_key(), filler
    )

    with pytest.raises(ProtocolError) as caught:
        device.receive_data(reply)

    assert caught.value.stage is Stage.HANDSHAKE_DECRYPT


def test_session_key_for_another_device_key_is_never_blamed_on_the_server_key() -> None:
    right, wrong = vectors.device_key(1), vectors.device_key(0)
    for _ in range(3000):  # about 25 tries on average find a 40-byte junk decryption
        ciphertext = right.public_key().encrypt(SESSION, padding.PKCS1v15())
        junk = crypto.rsa_decrypt(wrong, ciphertext)
        if junk is not None and len(junk) == len(SESSION):
            break
    else:
        pytest.skip("this OpenSSL raises on bad PKCS#1 padding: the mix-up cannot happen")
    signature = raw_type1_signature(vectors.server_key(), hmac_sha1(SESSION, ciphertext))
    handshake = DeviceHandshake(DEVICE_ID, wrong, vectors.server_key().public_key())
    handshake.identify(NONCE)

    with pytest.raises(ProtocolError) as caught:
        handshake.read_session_key(ciphertext + signature)

    assert caught.value.stage is Stage.HANDSHAKE_DECRYPT


def test_unknown_device_fails_unknown_device() -> None:
    server, device = new_server(), new_device()
    server.receive_data(_identify(server, device))

    with pytest.raises(ProtocolError) as caught:
        server.accept_device(None)

    assert caught.value.stage is Stage.UNKNOWN_DEVICE
    assert caught.value.device_id == DEVICE_ID
    assert server.data_to_send() == b""


def test_device_offering_another_key_fails_key_mismatch() -> None:
    server, device = new_server(), new_device(key_index=0)
    server.receive_data(_identify(server, device))

    with pytest.raises(ProtocolError) as caught:
        server.accept_device(vectors.device_key(1).public_key())

    assert caught.value.stage is Stage.KEY_MISMATCH
    assert caught.value.device_id == DEVICE_ID
    assert server.data_to_send() == b""


def test_device_offering_an_unreadable_key_fails_key_mismatch() -> None:
    handshake = ServerHandshake(vectors.server_key(), scripted(NONCE, SESSION))
    handshake.nonce()
    block = (
        vectors.server_key()
        .public_key()
        .encrypt(NONCE + DEVICE_ID_BYTES + b"\x30" + b"\x00" * 161, padding.PKCS1v15())
    )
    handshake.read_device_block(block)

    with pytest.raises(ProtocolError) as caught:
        handshake.session_key_reply(vectors.device_key(0).public_key())

    assert caught.value.stage is Stage.KEY_MISMATCH


# -- EOF at every point ----------------------------------------------------------------------


def _eof_stage(end: ServerConnection | DeviceConnection) -> Stage:
    with pytest.raises(ProtocolError) as caught:
        end.receive_eof()
    assert caught.value.reason
    return caught.value.stage


def test_server_eof_before_the_nonce_is_a_tcp_failure() -> None:
    assert _eof_stage(new_server()) is Stage.TCP


def test_server_eof_at_each_point() -> None:
    server, device = new_server(), new_device()
    server.start()
    assert _eof_stage(server) is Stage.NONCE

    device.receive_data(server.data_to_send())
    block = device.data_to_send()
    server.receive_data(block[:100])
    assert _eof_stage(server) is Stage.NONCE  # 100 of 256 bytes

    server.receive_data(block[100:])
    assert _eof_stage(server) is Stage.UNKNOWN_DEVICE  # identified, not answered yet

    server.accept_device(vectors.device_key(0).public_key())
    assert _eof_stage(server) is Stage.HELLO  # the device did not like our reply

    device.receive_data(server.data_to_send())
    hello_frame = device.data_to_send()
    server.receive_data(hello_frame)
    device.ping()
    ping_frame = device.data_to_send()
    server.receive_data(ping_frame[:3])
    with pytest.raises(ProtocolError) as caught:  # a frame cut short is a failure
        server.receive_eof()
    assert (caught.value.stage, caught.value.reason) == (
        Stage.SESSION,
        "the device closed the connection in the middle of a frame",
    )
    assert not server.closed_cleanly

    server.receive_data(ping_frame[3:])
    server.receive_eof()  # after its Hello, between frames: a clean close, no failure
    assert server.closed_cleanly


def test_device_eof_at_each_point() -> None:
    server, device = new_server(), new_device()
    assert _eof_stage(device) is Stage.NONCE

    server.start()
    nonce = server.data_to_send()
    device.receive_data(nonce[:20])
    assert _eof_stage(device) is Stage.NONCE

    device.receive_data(nonce[20:])
    assert _eof_stage(device) is Stage.REFUSED  # block sent, no reply

    server.receive_data(device.data_to_send())
    server.accept_device(vectors.device_key(0).public_key())
    reply = server.data_to_send()
    device.receive_data(reply[:383])
    assert _eof_stage(device) is Stage.REFUSED

    device.receive_data(reply[383:])
    assert _eof_stage(device) is Stage.HELLO  # our Hello out, the server's not in

    server.receive_data(device.data_to_send())
    device.receive_data(server.data_to_send())
    assert _eof_stage(device) is Stage.SESSION


# -- the state tables ------------------------------------------------------------------------

SERVER_TABLE = {
    (ServerState.START, ServerInput.SEND_NONCE): ServerState.NONCE_SENT,
    (ServerState.NONCE_SENT, ServerInput.RECV_DEVICE_BLOCK): ServerState.OPENING,
    (ServerState.OPENING, ServerInput.OPEN_DEVICE_BLOCK): ServerState.IDENTIFIED,
    (ServerState.IDENTIFIED, ServerInput.MAKE_SESSION_KEY): ServerState.SIGNING,
    (ServerState.SIGNING, ServerInput.SEND_SESSION_KEY): ServerState.KEYS_SENT,
}
SERVER_PATH = list(ServerInput)
DEVICE_TABLE = {
    (DeviceState.START, DeviceInput.RECV_NONCE): DeviceState.ID_SENT,
    (DeviceState.ID_SENT, DeviceInput.RECV_SESSION_KEY): DeviceState.KEYED,
}
_DEVICE_BLOCK = (
    vectors.server_key()
    .public_key()
    .encrypt(NONCE + DEVICE_ID_BYTES + spki(vectors.device_key(0)), padding.PKCS1v15())
)
_REPLY = hand_made_reply(SESSION, vectors.device_key(0).public_key(), vectors.server_key(), 3)


def _new_server_handshake() -> ServerHandshake:
    return ServerHandshake(vectors.server_key(), lambda count: (NONCE + SESSION)[:count])


_DEVICE_PLAINTEXT = NONCE + DEVICE_ID_BYTES + spki(vectors.device_key(0))


def _server_step(handshake: ServerHandshake, step: ServerInput) -> None:
    if step is ServerInput.SEND_NONCE:
        handshake.nonce()
    elif step is ServerInput.RECV_DEVICE_BLOCK:
        handshake.receive_device_block()
    elif step is ServerInput.OPEN_DEVICE_BLOCK:
        handshake.open_device_block(_DEVICE_PLAINTEXT)
    elif step is ServerInput.MAKE_SESSION_KEY:
        handshake.make_session_key(vectors.device_key(0).public_key())
    else:
        handshake.signed_reply(bytes(256))


def _new_device_handshake() -> DeviceHandshake:
    return DeviceHandshake(DEVICE_ID, vectors.device_key(0), vectors.server_key().public_key())


def _device_step(handshake: DeviceHandshake, step: DeviceInput) -> None:
    if step is DeviceInput.RECV_NONCE:
        handshake.identify(NONCE)
    else:
        handshake.read_session_key(_REPLY)


def _server_in(state: ServerState) -> ServerHandshake:
    handshake = _new_server_handshake()
    for step in SERVER_PATH:
        if handshake.state is state:
            break
        _server_step(handshake, step)
    assert handshake.state is state
    return handshake


def _device_in(state: DeviceState) -> DeviceHandshake:
    handshake = _new_device_handshake()
    for step in (DeviceInput.RECV_NONCE, DeviceInput.RECV_SESSION_KEY):
        if handshake.state is state:
            break
        _device_step(handshake, step)
    assert handshake.state is state
    return handshake


@pytest.mark.parametrize(("state", "step"), list(itertools.product(ServerState, ServerInput)))
def test_server_table_every_state_and_input(state: ServerState, step: ServerInput) -> None:
    handshake = _server_in(state)

    if (state, step) in SERVER_TABLE:
        _server_step(handshake, step)
        assert handshake.state is SERVER_TABLE[state, step]
        return
    with pytest.raises(ProtocolError) as caught:
        _server_step(handshake, step)
    assert caught.value.stage is SERVER_STAGE[state]
    assert handshake.state is state


@pytest.mark.parametrize(("state", "step"), list(itertools.product(DeviceState, DeviceInput)))
def test_device_table_every_state_and_input(state: DeviceState, step: DeviceInput) -> None:
    handshake = _device_in(state)

    if (state, step) in DEVICE_TABLE:
        _device_step(handshake, step)
        assert handshake.state is DEVICE_TABLE[state, step]
        return
    with pytest.raises(ProtocolError) as caught:
        _device_step(handshake, step)
    assert caught.value.stage is DEVICE_STAGE[state]
    assert handshake.state is state


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(ServerInput), max_size=6))
def test_server_follows_only_its_table(steps: list[ServerInput]) -> None:
    handshake = _new_server_handshake()
    for step in steps:
        expected = SERVER_TABLE.get((handshake.state, step))
        if expected is None:
            with pytest.raises(ProtocolError):
                _server_step(handshake, step)
            return  # a protocol error ends the connection
        _server_step(handshake, step)
        assert handshake.state is expected


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(DeviceInput), max_size=5))
def test_device_follows_only_its_table(steps: list[DeviceInput]) -> None:
    handshake = _new_device_handshake()
    for step in steps:
        expected = DEVICE_TABLE.get((handshake.state, step))
        if expected is None:
            with pytest.raises(ProtocolError):
                _device_step(handshake, step)
            return
        _device_step(handshake, step)
        assert handshake.state is expected


def test_accepting_twice_is_out_of_order() -> None:
    server, device = new_server(), new_device()
    server.receive_data(_identify(server, device))
    server.accept_device(vectors.device_key(0).public_key())

    with pytest.raises(ProtocolError):
        server.accept_device(vectors.device_key(0).public_key())


def test_starting_twice_is_out_of_order() -> None:
    server = new_server()
    server.start()

    with pytest.raises(ProtocolError) as caught:
        server.start()

    assert caught.value.stage is Stage.NONCE


def test_sending_before_the_handshake_is_a_session_error() -> None:
    server = new_server()
    server.start()

    with pytest.raises(ProtocolError) as caught:
        server.ping()

    assert caught.value.stage is Stage.SESSION
