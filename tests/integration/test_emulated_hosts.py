"""The emulated-hosts harness itself: two harnesses at once (two test sessions, a benchmark beside a test).

Removing a directory that is a mount point in another mount namespace detaches that mount there, so a harness
that removed the ``/run/sshd`` it had created while another harness's hosts ran made their sshd reset every
connection. The mount points are now removed only by the last harness to close.
"""
from __future__ import annotations

import os

from emulator.hosts.emulated import PRIVATE_DIRS, EmulatedHosts


def test_the_first_harness_closing_keeps_the_seconds_mounts() -> None:
    missing = [d for d in PRIVATE_DIRS if not os.path.isdir(d)]
    a = EmulatedHosts(1, prefix="mdira")
    b = EmulatedHosts(1, prefix="mdirb")
    try:
        a.start()
        assert a.created_dirs == missing  # the first harness creates what is missing (here: at least none)
        b.start()
        a.close()
        assert all(os.path.isdir(d) for d in PRIVATE_DIRS)  # b still needs them
        mounts = b.host_run("mdirb1", ["findmnt", "-n", "-o", "TARGET,FSTYPE", "/run/sshd"]).stdout.split()
        assert mounts == ["/run/sshd", "tmpfs"]
        assert b.host_run("mdirb1", ["ss", "-Hltn", "sport = :22"]).stdout.strip()  # its sshd still listens
    finally:
        a.close()
        b.close()
    assert [d for d in PRIVATE_DIRS if not os.path.isdir(d)] == missing  # the last one removed what was made
