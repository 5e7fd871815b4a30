"""Process-wide memory settings for a program that runs for weeks.

glibc gives each thread that allocates its own malloc arena (up to 8 per core).  edgewatch has a
grabber thread per camera, student workers and a thread per teacher call, all allocating and
freeing multi-megabyte frames; with many arenas the freed memory stays scattered across them and
resident memory creeps up for minutes (measured with bench/soak.py: 4 cameras, 318 MiB and still
growing after 4 minutes with the default arenas, 215 MiB and flat with two).  Two arenas is what
the glibc manual suggests for such programs (it is the MALLOC_ARENA_MAX tunable); elsewhere
(musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("edgewatch.memory")

#: mallopt parameter number of M_ARENA_MAX in glibc's malloc.h.
_M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; call before threads start.  True when the C library took it."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, ok)
    return ok
