"""`cyan keys server` writes the same 512 bytes as particle-cli 3.51's own formatter.

`particle keys server FILE --deviceType photon` writes no file in 3.51 (rest-api.md §8.2),
so this drives the installed CLI's code directly: a small Node script loads
src/cmd/keys.js, sets the platform to photon as `_writeServerPublicKey` does for a connected
Photon, and calls `_formatPublicKey` on a DER file. It is fed DER so it never shells out
to openssl. Cyan runs as the installed `cyan` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cyan.datadir import SERVER_PUBLIC_DER_FILE
from cyan.protocol import crypto, keys
from tests.compat.conftest import NODE_MODULES, client_environment
from tests.served import served_data_dir

CYAN = str(Path(sys.executable).parent / "cyan")
TIMEOUT_S = 60.0

# argv: particle-cli's directory, DER file, host ('' for none), port ('' for none), output.
FORMATTER = """\
'use strict';
const [cliDir, derFile, host, port, output] = process.argv.slice(2);
const KeysCommand = require(cliDir + '/src/cmd/keys.js');
const command = new KeysCommand();
command.platform = 'photon';
const protocol = command._getDeviceProtocol();
if (protocol !== 'tcp') throw new Error('a Photon speaks tcp, the CLI says ' + protocol);
const written = command._formatPublicKey(derFile, host || undefined,
  port ? Number(port) : undefined, { protocol, outputFilename: output });
if (written !== output) throw new Error('the CLI wrote ' + written + ', not ' + output);
"""


def particle_cli_image(
    node: Path, workdir: Path, der: Path, host: str | None, port: int | None
) -> bytes:
    """The image particle-cli 3.51 formats for a Photon from ``der``, host and port."""
    script, output = workdir / "format-key.js", workdir / f"cli-{host}-{port}.der"
    script.write_text(FORMATTER)
    argv = [str(node), str(script), str(NODE_MODULES / "particle-cli")]
    argv += [str(der), host or "", str(port or ""), str(output)]
    done = subprocess.run(
        argv,
        env=client_environment(workdir),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"the formatter failed:\n{done.stdout}\n{done.stderr}"
    return output.read_bytes()


def cyan_image(workdir: Path, data_dir: Path, *args: str) -> bytes:
    output = workdir / "cyan-image.der"
    env = {**os.environ, "CYAN_DATA_DIR": str(data_dir), "NO_COLOR": "1"}
    done = subprocess.run(
        [CYAN, "keys", "server", "--out", str(output), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(output)
    return output.read_bytes()


@pytest.fixture
def server_der(tmp_path: Path) -> Path:
    """A server public key (RSA-2048 DER) that is not the data dir's."""
    path = tmp_path / "other-server.pub.der"
    path.write_bytes(crypto.public_key_der(keys.generate_server_key().public_key()))
    return path


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("192.168.1.10", 5683),  # rest-api.md §8.2's example: 00 04 c0 a8 01 0a, 16 33
        ("10.0.0.2", None),
        ("cloud.example.lan", None),  # 17 characters: the CLI does not pad odd lengths
        ("cyan.example.org", 15683),  # even length, with a port
    ],
)
def test_image_with_a_host_is_byte_equal_to_particle_cli(
    node: Path, tmp_path: Path, server_der: Path, host: str, port: int | None
) -> None:
    port_args = ["--port", str(port)] if port else []
    ours = cyan_image(
        tmp_path, tmp_path / "data", "--key", str(server_der), "--host", host, *port_args
    )
    theirs = particle_cli_image(node, tmp_path, server_der, host, port)
    assert len(theirs) == keys.SERVER_KEY_IMAGE_BYTES
    assert ours.hex() == theirs.hex()
    parsed = keys.parse_server_key_image(ours)
    assert parsed.address == keys.ServerAddress(host, port)


def test_image_without_a_host_is_byte_equal_to_particle_cli(node: Path, tmp_path: Path) -> None:
    """The default key is the data dir's; no address block, so a Photon goes to Particle."""
    data_dir = served_data_dir(tmp_path / "data")
    ours = cyan_image(tmp_path, data_dir)
    theirs = particle_cli_image(node, tmp_path, data_dir / SERVER_PUBLIC_DER_FILE, None, None)
    assert len(theirs) == keys.SERVER_KEY_IMAGE_BYTES
    assert ours.hex() == theirs.hex()
    assert ours[keys.SERVER_ADDRESS_OFFSET :] == b"\xff" * (512 - keys.SERVER_ADDRESS_OFFSET)
