"""The ``pause`` image: a process that holds the pod and does nothing, as small as Kubernetes' own.

Kubernetes' pause container is a tiny static program that sleeps in ``pause()`` until a signal ends it. Ours
is the same idea written out byte by byte: a static x86-64 ELF of 129 bytes (one loadable segment, three
instructions: ``mov eax, 34`` (``pause``), ``syscall``, jump back), written once into the state root. Starting
it costs an ``execve`` and nothing else: no dynamic loader, no libc start-up (``sleep infinity``, the fallback,
spends longer in ld.so and libc's CPU-feature probing than in exec itself; with a thousand pods that is about
0.3 s of CPU). SIGTERM and SIGKILL end it with their default action, as for any container process.

On other architectures ``sleep infinity`` is used, shown as ``pause`` in ``ps``.
"""
from __future__ import annotations

import os
import platform
import shutil
import struct

from emulator.state.paths import state_root
from emulator.state.store import write_atomic

_BASE = 0x400000
_CODE_X86_64 = bytes.fromhex("b822000000" "0f05" "ebf7")  # mov eax,34 (pause); syscall; jmp back 9 bytes
SLEEP = shutil.which("sleep") or "/bin/sleep"
_cached: str | None = None


def elf_x86_64() -> bytes:
    """The pause program: ELF header, one PT_LOAD program header (R+X), the code."""
    ehsize, phsize = 64, 56
    entry = _BASE + ehsize + phsize
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, version 1, System V
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, entry, ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    size = ehsize + phsize + len(_CODE_X86_64)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, PF_R|PF_X
    return header + program + _CODE_X86_64


def binary() -> str:
    """Path of the executable that runs as ``pause`` (written on first use; ``sleep`` where we have none)."""
    global _cached
    if _cached is not None and os.path.exists(_cached):
        return _cached
    if platform.machine() not in ("x86_64", "amd64"):
        _cached = SLEEP
        return _cached
    path = state_root() / "bin" / "pause"
    data = elf_x86_64()
    try:
        if not path.exists() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, mode=0o755)
        _cached = str(path)
    except OSError:
        _cached = SLEEP
    return _cached
