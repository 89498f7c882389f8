"""Fixtures of the Python binding tests: a real haven-relay process on a temporary SQLite
database and a free port (HAVEN_RELAY_BIN, set by `cargo xtask test`), and the generated
`haven` module (PYTHONPATH)."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def relay(tmp_path_factory):
    """Starts haven-relay and yields its base URL; stops it at the end."""
    binary = os.environ.get("HAVEN_RELAY_BIN")
    assert binary and os.path.exists(binary), "HAVEN_RELAY_BIN must name a built haven-relay"
    work = tmp_path_factory.mktemp("relay")
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "HAVEN_LISTEN": f"127.0.0.1:{port}",
            "HAVEN_METRICS_LISTEN": "off",
            "HAVEN_DATABASE_URL": f"sqlite://{work / 'relay.db'}?mode=rwc",
            "HAVEN_BLOBS_DIR": str(work / "blobs"),
            "HAVEN_LOG": "info",
            "HAVEN_RATE_LIMIT_PER_MINUTE": "100000",
            "HAVEN_AUTH_RATE_LIMIT_PER_MINUTE": "10000",
        }
    )
    log = open(work / "relay.log", "wb")
    proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"relay exited with {proc.returncode}; see {work / 'relay.log'}")
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("relay did not become ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path
