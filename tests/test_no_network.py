"""The autouse guard in conftest.py: tests reach loopback only, never the network."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from conftest import NetworkBlocked
from ee_fake_server import FakeEarthEngine


def test_connect_to_a_public_address_fails_with_a_clear_message():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(NetworkBlocked) as err:
        s.connect(("8.8.8.8", 53))
    assert "8.8.8.8:53" in str(err.value) and "must not touch the network" in str(err.value)
    assert "test_no_network.py::test_connect_to_a_public_address" in str(err.value)
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect_ex(("1.1.1.1", 53))
    with pytest.raises(NetworkBlocked, match="8.8.8.8:53"):
        socket.create_connection(("8.8.8.8", 53), timeout=1)


def test_lookups_of_remote_names_fail_and_http_clients_see_no_network():
    with pytest.raises(socket.gaierror, match="earthengine.googleapis.com"):
        socket.getaddrinfo("earthengine.googleapis.com", 443)
    with pytest.raises(NetworkBlocked):
        socket.gethostbyname("example.com")
    with pytest.raises(OSError, match="must not touch the network"):
        urllib.request.urlopen("https://earthengine.googleapis.com/", timeout=1)


def test_loopback_and_unix_sockets_still_work(tmp_path):
    server = FakeEarthEngine().start()
    try:
        assert socket.getaddrinfo("localhost", 80)
        url = server.url.replace("127.0.0.1", "localhost")
        with urllib.request.urlopen(f"{url}/$discovery/rest", timeout=5) as r:
            assert r.status == 200
    finally:
        server.stop()
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as srv, socket.socket(socket.AF_UNIX) as cli:
        srv.bind(path)
        srv.listen()
        cli.connect(path)
