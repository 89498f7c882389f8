"""Fixtures of the Python binding tests: a real relay from `haven-test-relay` (the workspace's
one test-relay launcher, HAVEN_TEST_RELAY_BIN, set by `cargo xtask test`) on a temporary SQLite
database, and the generated `haven` module (PYTHONPATH)."""

import json
import os
import subprocess

import pytest


@pytest.fixture(scope="session")
def relay(tmp_path_factory):
    """Starts a test relay and yields its base URL; stops it at the end (closing its stdin)."""
    launcher = os.environ.get("HAVEN_TEST_RELAY_BIN")
    assert launcher and os.path.exists(launcher), "HAVEN_TEST_RELAY_BIN must name haven-test-relay"
    work = tmp_path_factory.mktemp("relay")
    log = open(work / "relay.log", "wb")
    proc = subprocess.Popen(
        [launcher, "--set", "HAVEN_LOG=info"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"haven-test-relay did not start; see {work / 'relay.log'}")
        yield json.loads(line)["url"]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path


@pytest.fixture
def hostile(tmp_path):
    """Starts a hostile relay (`haven-hostile-relay`, HAVEN_HOSTILE_RELAY_BIN: a real relay
    behind a lying proxy) for one test; yields {"url", "dir", "control"}. Skips when the
    launcher is not given (`.ci/ffi.sh` builds and gives it)."""
    launcher = os.environ.get("HAVEN_HOSTILE_RELAY_BIN")
    if not launcher or not os.path.exists(launcher):
        pytest.skip("HAVEN_HOSTILE_RELAY_BIN does not name haven-hostile-relay")
    log = open(tmp_path / "hostile-relay.log", "wb")
    proc = subprocess.Popen(
        [launcher, "--set", "HAVEN_LOG=info"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"haven-hostile-relay did not start; see {tmp_path / 'hostile-relay.log'}")
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
