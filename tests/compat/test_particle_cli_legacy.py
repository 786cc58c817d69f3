"""particle-cli 3.43.1, unchanged, against Cyan: the release npm installs on Node 20.

Releases before 3.48 log in through their legacy API client, with the OAuth client
``CLI2`` and the secret ``client_secret_here`` (particle-cli v3.43.1
src/lib/api-client.js, settings.js), and set the API URL with ``particle config``:
``particle profile`` came in 3.47. A reader following README with such a CLI must get as
far as with 3.51.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cyan.device import VirtualDevice
from cyan.settings import ADMIN_USERNAME
from tests.compat.conftest import (
    LAMP,
    LEGACY_NODE_MODULES,
    LEGACY_PARTICLE_CLI,
    LEGACY_VERSION,
    SETUP_HINT,
    ParticleCli,
    _installed_version,
    api_url,
)
from tests.system import Cloud

PASSWORD = "correct horse battery staple"


@pytest.fixture
def old_particle(node: Path, cloud: Cloud, tmp_path: Path) -> ParticleCli:
    found = _installed_version("particle-cli", LEGACY_NODE_MODULES)
    if found != LEGACY_VERSION:
        pytest.fail(
            f"particle-cli {LEGACY_VERSION} is {found or 'not installed'}: {SETUP_HINT}",
            pytrace=False,
        )
    home = tmp_path / "home"
    home.mkdir()
    return ParticleCli(home, api_url(cloud), command=(str(node), str(LEGACY_PARTICLE_CLI)))


async def test_the_old_spelling_sets_the_api_url(old_particle: ParticleCli) -> None:
    result = await old_particle.ok("config", "set", "apiUrl", old_particle.api_url)
    assert old_particle.config()["apiUrl"] == old_particle.api_url, result
    version = await old_particle.ok("--version")
    assert version.stdout.strip() == LEGACY_VERSION


async def test_an_old_cli_logs_in_as_cli2_and_reaches_its_devices(
    old_particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice
) -> None:
    store = cloud.node.store
    admin = await store.users.find(ADMIN_USERNAME)
    assert admin is not None
    await store.users.set_password(admin.id, PASSWORD)  # `cyan user password admin`
    await old_particle.ok("config", "set", "apiUrl", old_particle.api_url)

    login = await old_particle.ok("login", "-u", ADMIN_USERNAME, "-p", PASSWORD)

    assert "> Successfully completed login!" in login.stdout, login
    token = old_particle.config()["access_token"]
    user = await store.tokens.user_for(token)
    assert user is not None
    assert user.id == admin.id
    current = await cloud.http.get(
        "/v1/access_tokens/current", headers={"Authorization": f"Bearer {token}"}
    )
    assert current.json()["client_id"] == "CLI2"
    listing = await old_particle.ok("list")
    assert f"{LAMP} [{lamp.device_id}]" in listing.stdout, listing
    called = await old_particle.ok("call", LAMP, "digitalwrite", "D7,HIGH")
    assert called.stdout.strip().splitlines()[-1] == "1", called
