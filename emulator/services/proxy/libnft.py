"""``nft`` without a process: libnftables (the library the ``nft`` program is built on) called in-process.

``Nft.run(text)`` hands a whole buffer to ``nft_run_cmd_from_buffer``, which parses it and commits it as one
transaction, exactly as ``nft -f`` does, and returns what ``nft`` would have printed (with ``terse``, listings
leave set elements out, as ``nft -t``). Ten kube-proxies reacting
to one change each save the start of an ``nft`` process (about 15 ms of CPU against 3 ms), which is most of the
difference between meeting a 200 ms propagation target on a busy two-core machine and missing it. Without the
library (no ``libnftables.so.1``), the ``nft`` program is run instead. The calling thread's network namespace
is the one changed: kube-proxy runs inside its node's namespace. ``Nft(json=True)`` prints listings as nft's JSON
(``nft -j``), which is how ``trace`` reads a node's rules; ``close`` frees the context and its netlink socket.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import subprocess

from emulator.errors import NftError


NFT_CTX_OUTPUT_JSON = 1 << 4
#: libnftables' NFT_CTX_OUTPUT_TERSE: listings leave set elements out (``nft -t``)
OUTPUT_TERSE = 1 << 11


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """libnftables with its prototypes declared, loaded once per process (``find_library`` runs ``ldconfig``)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    return lib


class Nft:
    def __init__(self, use_library: bool = True, json: bool = False, terse: bool = False) -> None:
        self._lib = None
        self._ctx = None
        self.json, self.terse = json, terse
        lib = _library() if use_library else None
        if lib is not None:
            ctx = lib.nft_ctx_new(0)
            if ctx:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                flags = (NFT_CTX_OUTPUT_JSON if json else 0) | (OUTPUT_TERSE if terse else 0)
                if flags:
                    lib.nft_ctx_output_set_flags(ctx, flags)
                self._lib, self._ctx = lib, ctx

    @property
    def in_process(self) -> bool:
        return self._lib is not None

    def run(self, text: str) -> str:
        """Run nft commands (one transaction); return their output; NftError with nft's message."""
        if self._lib is None:
            argv = ["nft", *(["-j"] if self.json else []), *(["-t"] if self.terse else []), "-f", "-"]
            r = subprocess.run(argv, input=text, capture_output=True, text=True)
            if r.returncode != 0:
                raise NftError(f"nft failed: {(r.stderr or r.stdout).strip()[:2000]}", obj="nft")
            return r.stdout
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
        out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise NftError(f"nft failed: {err.strip()[:2000]}", obj="nft")
        return out

    def close(self) -> None:
        """Free the library's context and its netlink socket (a later ``run`` starts the ``nft`` program)."""
        if self._lib is not None and self._ctx:
            self._lib.nft_ctx_free(self._ctx)
        self._lib = self._ctx = None

    def __enter__(self) -> "Nft":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
