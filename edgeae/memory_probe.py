"""How much memory this process can get now, from the kernel's own accounting (standard library only).

:func:`available_memory` is the smallest of ``MemAvailable``, the room under the process's memory cgroup and the
address space left under ``RLIMIT_AS`` (:func:`tightest` also names which). It is neutral: the ground station's
limits, the reconstruct command, the trainers, the mask generator (:mod:`edgeae.masks`) and the flight runtime's
boot, frames and bench (``firmware_sim.memory_room``) ask it before large allocations.
"""

from __future__ import annotations

import functools
import os

MEMINFO = "/proc/meminfo"
CGROUP = "/sys/fs/cgroup"  # v2 files in it (memory.max), v1 files in its memory/ folder (memory.limit_in_bytes)
PROC_STATUS = "/proc/self/status"
_UNLIMITED = 1 << 60  # a cgroup v1 limit at or above this is "no limit" (the kernel writes ~2**63)


def _read_int(path: str) -> int | None:
    """The integer a one-value file holds; None when it is missing, unreadable or ``max``."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _stat_value(path: str, key: str, unit: int = 1) -> int | None:
    """The number after ``key`` in a ``KEY value`` file (/proc/meminfo, memory.stat), times ``unit``."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                fields = line.split()  # "VmSize:\t  123 kB", "MemAvailable:   123 kB", "inactive_file 123"
                if fields and fields[0].rstrip(":") == key:
                    return int(fields[1]) * unit
    except (OSError, ValueError, IndexError):
        return None
    return None


PROC_CGROUP = "/proc/self/cgroup"
ZONEINFO = "/proc/zoneinfo"
# limit, usage, stat file; then the stat keys of the file cache (reclaimed on demand: active and inactive) and of
# the part of it that cannot be dropped at once (dirty, under writeback)
V2_FILES = (
    "memory.max",
    "memory.current",
    "memory.stat",
    ("active_file", "inactive_file"),
    ("file_dirty", "file_writeback"),
)
V1_FILES = (
    "memory.limit_in_bytes",
    "memory.usage_in_bytes",
    "memory.stat",
    ("total_active_file", "total_inactive_file"),
    ("total_dirty", "total_writeback"),
)
_Files = tuple[str, str, str, tuple[str, str], tuple[str, str]]


def _stat_values(path: str) -> dict[str, int]:
    """Every ``KEY value`` line of a stat file (memory.stat), read once; {} when it cannot be read."""
    found: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2 and fields[1].isdigit():
                    found[fields[0]] = int(fields[1])
    except (OSError, ValueError):
        return {}
    return found


@functools.lru_cache(maxsize=1)
def _low_watermark() -> int | None:
    """The kernel's low watermark in bytes (the sum of each zone's ``low`` in /proc/zoneinfo), the reserve its
    MemAvailable estimate keeps back from the page cache; None where it cannot be read. Read once per process (it
    moves only with ``vm.min_free_kbytes`` or memory hotplug): the probe runs before every frame, once per cgroup
    level, and until review r13 of session 36 parsed the file each time (3.4 ms for a 256-CPU host's)."""
    try:
        with open(ZONEINFO, encoding="ascii") as f:
            pages = sum(int(ln.split()[1]) for ln in f if ln.split()[:1] == ["low"])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reclaimable_cache(stat: dict[str, int], cache_keys: tuple[str, ...], busy_keys: tuple[str, ...]) -> int:
    """The page cache of a cgroup's memory.stat that the kernel would reclaim for a new allocation, counted more
    conservatively than MemAvailable (which does not take dirty and writeback pages off): the file cache, active
    and inactive (a long flight reads its queue and telemetry again, so most of its cache is active), less what is
    dirty or under writeback (it must be written before it can be dropped), less a reserve of half of it or the
    low watermark, whichever is smaller, as MemAvailable keeps back (until review r9 of session 36 only the
    inactive file cache counted, so a cgroup full of active cache looked full and frames were degraded or
    dropped)."""
    cache = sum(stat.get(k, 0) for k in cache_keys) - sum(stat.get(k, 0) for k in busy_keys)
    cache = max(0, cache)
    low = _low_watermark()
    return cache - (cache // 2 if low is None else min(cache // 2, low))


def _cgroup_dirs() -> list[tuple[str, _Files]]:
    """(folder, its files) of this process's memory cgroup and each cgroup above it, the deepest first: its path
    from ``/proc/self/cgroup`` (v2 ``0::PATH``, v1 a line whose controllers include ``memory``) under
    :data:`CGROUP`, then the root's (all a container with a view of its own has)."""
    found: list[tuple[str, _Files]] = []
    try:
        with open(PROC_CGROUP, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            base, files = CGROUP, V2_FILES
        elif "memory" in parts[1].split(","):
            base, files = os.path.join(CGROUP, "memory"), V1_FILES
        else:
            continue
        rel = parts[2].strip("/")
        while rel:
            if os.path.isdir(os.path.join(base, rel)):
                found.append((os.path.join(base, rel), files))
            rel = os.path.dirname(rel)
    return [*found, (CGROUP, V2_FILES), (os.path.join(CGROUP, "memory"), V1_FILES)]


def _cgroup_room() -> int | None:
    """Bytes this process's memory cgroup can still take: the least, over its cgroup and those above it, of the
    limit less the usage (page cache the kernel would reclaim not counted as used: :func:`reclaimable_cache`), v2 or
    v1; None where no limit."""
    rooms: list[int] = []
    for folder, (limit_file, usage_file, stat_file, cache_keys, busy_keys) in _cgroup_dirs():
        limit = _read_int(os.path.join(folder, limit_file))
        if limit is None or limit >= _UNLIMITED:
            continue
        used = _read_int(os.path.join(folder, usage_file)) or 0
        used -= min(used, reclaimable_cache(_stat_values(os.path.join(folder, stat_file)), cache_keys, busy_keys))
        rooms.append(max(0, limit - used))
    return min(rooms) if rooms else None


def _address_space_room() -> int | None:
    """Bytes of address space left under ``RLIMIT_AS`` (``ulimit -v``); None where there is no such limit (or no
    ``resource`` module: it is Unix-only)."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = _stat_value(PROC_STATUS, "VmSize", 1024) or 0
    return max(0, soft - used)


def memory_sources() -> dict[str, int]:
    """Each known bound on the memory this process can still get, in bytes, by name: ``MemAvailable`` (the
    system's), ``cgroup`` (the room under its memory cgroup's limit) and ``RLIMIT_AS`` (the address space left under
    ``ulimit -v`` / ``prlimit --as``, which counts what is reserved as well as what is touched); absent where unknown
    or unlimited."""
    found = {
        "MemAvailable": _stat_value(MEMINFO, "MemAvailable", 1024),
        "cgroup": _cgroup_room(),
        "RLIMIT_AS": _address_space_room(),
    }
    return {k: v for k, v in found.items() if v is not None}


SOURCE_NAMES = {
    "MemAvailable": "the memory the system has available (MemAvailable)",
    "cgroup": "the room left under this process's memory cgroup limit (memory.max)",
    "RLIMIT_AS": "the address space left under this process's limit (RLIMIT_AS: ulimit -v / prlimit --as)",
}


def tightest() -> tuple[int, str] | None:
    """``(bytes, name)`` of the smallest of :func:`memory_sources` (``name`` a key of :data:`SOURCE_NAMES`): the
    bound that a process short of memory meets first; None where none is known."""
    found = memory_sources()
    if not found:
        return None
    name = min(found, key=lambda k: found[k])
    return found[name], name


def available_memory() -> int | None:
    """Memory this process can get without swapping or being killed: the smallest of the system's
    ``MemAvailable``, the room left under its memory cgroup's limit (v2 ``memory.max`` less ``memory.current``,
    v1 ``memory.limit_in_bytes`` less usage; reclaimable page cache counted as free) and the address space left
    under ``RLIMIT_AS``; None where none of them is known."""
    found = tightest()
    return None if found is None else found[0]
