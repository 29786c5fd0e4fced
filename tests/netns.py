"""A throwaway Linux network namespace for tests whose traffic must stay on this machine.

:func:`network_namespace` makes a namespace with ``lo`` up and a veth pair whose
two ends are both inside it (``10.213.0.1/24`` and ``10.213.0.2/24``) with a
default route onto it, so programs run in it (``ip netns exec NAME ...``) see a
real, non-loopback interface -- which WebRTC needs, as Chromium gathers no
loopback candidates -- while no packet can leave the namespace. Its own
``/etc/netns/NAME/resolv.conf`` and ``hosts`` (which ``ip netns exec`` mounts over
``/etc``) point name lookups at the namespace's loopback, so a lookup fails at
once instead of waiting seconds for the machine's resolver, which is out of
reach. IPv6 is off in it, and it is handed over only once both veth ends are
up: otherwise the kernel adds and confirms IPv6 link-local addresses a second
or two later, and Chromium, which watches the interfaces over netlink, aborts
what it is loading with ``net::ERR_NETWORK_CHANGED``. It is deleted on exit,
also on failure; namespaces that a killed test run left behind are swept the
next time.

Needs root (``ip netns add``); :func:`netns_unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

#: The two addresses inside every namespace made here (never reachable from outside it).
HOST_A = "10.213.0.1"
HOST_B = "10.213.0.2"
_PREFIX = "collab-test-"
_RUN_NETNS = Path("/run/netns")
_ETC_NETNS = Path("/etc/netns")


def netns_unavailable() -> str | None:
    """Why this process cannot make network namespaces, or None when it can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making a network namespace (ip netns add) needs root"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _settled(name: str) -> None:
    """Wait until both veth ends report operational state UP (the kernel's link watch
    can take up to a second to say so), so that no link event follows the handover."""
    deadline = time.monotonic() + 10
    while True:
        links = subprocess.run(
            ["ip", "-n", name, "-o", "link", "show"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        up = [line for line in links.splitlines() if "veth-" in line and "state UP" in line]
        if len(up) == 2:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the namespace's veth pair never came up: {links}")
        time.sleep(0.05)


def _sweep_stale() -> None:
    """Delete namespaces left by test processes that no longer exist."""
    names = {
        entry.name
        for folder in (_RUN_NETNS, _ETC_NETNS)
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.name.startswith(_PREFIX)
    }
    for name in names:
        pid = name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            if (_RUN_NETNS / name).exists():
                with contextlib.suppress(subprocess.SubprocessError):
                    _ip("netns", "del", name)
            shutil.rmtree(_ETC_NETNS / name, ignore_errors=True)


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh namespace's name, deleted on exit.

    Raises:
        subprocess.CalledProcessError: ``ip`` refused (no privilege, no kernel support).
    """
    _sweep_stale()
    name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    etc = _ETC_NETNS / name
    etc.mkdir(parents=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (etc / "hosts").write_text(
        f"127.0.0.1 localhost\n::1 localhost\n{HOST_A} host-a\n{HOST_B} host-b\n"
    )
    try:
        _ip("netns", "add", name)
    except BaseException:
        shutil.rmtree(etc, ignore_errors=True)
        raise
    try:
        # Before the veth pair exists, so that it never gets IPv6 addresses.
        for scope in ("all", "default"):
            _ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
        _ip("-n", name, "addr", "add", f"{HOST_A}/24", "dev", "veth-a")
        _ip("-n", name, "addr", "add", f"{HOST_B}/24", "dev", "veth-b")
        _ip("-n", name, "link", "set", "veth-a", "up")
        _ip("-n", name, "link", "set", "veth-b", "up")
        _ip("-n", name, "route", "add", "default", "via", HOST_B, "dev", "veth-a")
        _settled(name)
        yield name
    finally:
        # Deleting the namespace removes its interfaces; its processes are the caller's.
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("netns", "del", name)
        shutil.rmtree(etc, ignore_errors=True)


def exec_in(name: str, *argv: str) -> list[str]:
    """``argv`` run inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]
