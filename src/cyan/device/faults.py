"""Break a virtual device's key directory on purpose, the way real Photons get broken.

Each fault is written where a real device keeps it (its key directory stands for the
Photon's DCT), so the fix that Cyan prints for it (``cyan keys server``, ``cyan device
add``, ``cyan keys doctor``) repairs it for real, and the running device picks the repair
up on its next attempt.
"""

from __future__ import annotations

import dataclasses
import socket
from enum import StrEnum

from cyan.keydir import KeyStore
from cyan.protocol import keys

UNRESOLVABLE_HOST = "cyan-fault.invalid"  # RFC 6761: .invalid never resolves


class Fault(StrEnum):
    WRONG_SERVER_KEY = "wrong-server-key"
    DIFFERENT_KEY = "different-key"
    UNREGISTERED_KEY = "unregistered-key"
    UNRESOLVABLE_NAME = "unresolvable-name"
    CLOSED_PORT = "closed-port"


def closed_port(host: str) -> int:
    """A port on ``host`` where nothing listens: one the kernel just handed out and took back."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def apply_fault(store: KeyStore, fault: Fault) -> tuple[KeyStore, str]:
    """Write ``fault`` into the key directory; returns the new keys and what changed."""
    address = store.server.address
    if fault is Fault.WRONG_SERVER_KEY:
        other = keys.generate_server_key().public_key()
        broken = dataclasses.replace(store, server=keys.ServerKeyImage(other, address))
        what = "server-key.der now holds another server's public key"
    elif fault is Fault.DIFFERENT_KEY:
        broken = dataclasses.replace(store, device_key=keys.generate_device_key())
        what = "device-key.der now holds a new key, not the one registered on the server"
    elif fault is Fault.UNREGISTERED_KEY:
        broken = dataclasses.replace(
            store, device_id=keys.new_device_id(), device_key=keys.generate_device_key()
        )
        what = f"the directory now holds a new device {broken.device_id} that no server knows"
    elif fault is Fault.UNRESOLVABLE_NAME:
        unresolvable = keys.ServerAddress(UNRESOLVABLE_HOST, address.port)
        broken = dataclasses.replace(
            store, server=keys.ServerKeyImage(store.server.public_key, unresolvable)
        )
        what = f"server-key.der now names the server {UNRESOLVABLE_HOST}, which never resolves"
    else:
        host = address.host if address.host and address.is_ip else "127.0.0.1"
        port = closed_port(host)
        broken = dataclasses.replace(
            store,
            server=keys.ServerKeyImage(store.server.public_key, keys.ServerAddress(host, port)),
        )
        what = f"server-key.der now points at {host}:{port}, where nothing listens"
    broken.save()
    return broken, what
