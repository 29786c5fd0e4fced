"""tests/netns.py: the throwaway network namespace is made as described and always deleted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.netns import HOST_A, HOST_B, exec_in, netns_unavailable, network_namespace


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_a_namespace_has_both_addresses_and_is_deleted_even_on_failure() -> None:
    reason = netns_unavailable()
    if reason is not None:
        missing(reason)
    with pytest.raises(RuntimeError, match="the test failed"):
        with network_namespace() as ns:
            addresses = subprocess.run(
                exec_in(ns, "ip", "-4", "-o", "addr"), capture_output=True, text=True
            ).stdout
            assert f"{HOST_A}/24" in addresses and f"{HOST_B}/24" in addresses
            route = subprocess.run(
                exec_in(ns, "ip", "route", "show", "default"), capture_output=True, text=True
            ).stdout
            assert f"via {HOST_B}" in route
            assert ns in namespaces()
            raise RuntimeError("the test failed")
    assert ns not in namespaces()
    assert not Path("/etc/netns", ns).exists()


def test_no_interface_changes_once_the_namespace_is_handed_over() -> None:
    """Chromium aborts page loads (net::ERR_NETWORK_CHANGED) when an address or link
    changes under it: a namespace must be settled when its caller gets it."""
    reason = netns_unavailable()
    if reason is not None:
        missing(reason)
    with network_namespace() as ns:
        monitor = subprocess.Popen(
            ["ip", "-n", ns, "monitor", "link", "address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # IPv6 duplicate address detection confirms link-local addresses after ~1-2 s.
            monitor.wait(timeout=3)
        except subprocess.TimeoutExpired:
            monitor.terminate()
        events, _ = monitor.communicate(timeout=10)
        addresses = subprocess.run(
            exec_in(ns, "ip", "-6", "-o", "addr"), capture_output=True, text=True
        ).stdout
    assert events == ""
    assert addresses == ""
