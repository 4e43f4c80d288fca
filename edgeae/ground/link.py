"""A deterministic simulated space link: rate, contact windows, latency, loss, bursts, bit errors, reordering.

Packets are offered in order at ``start_time`` and sent back to back at ``data_rate_bps`` while a contact
window is open (a packet that does not fit in what is left of a window waits for the next one; packets
left when the last window closes are not sent). Each sent packet is then dropped independently with
probability ``loss``, or by a two-state Gilbert-Elliott channel (good -> bad with ``burst_p``, bad -> good
with ``burst_r``; loss ``burst_loss_good`` / ``burst_loss_bad`` in each state, combined with ``loss``),
has each bit flipped with probability ``ber``, arrives ``latency_s`` after its last bit (plus a uniform
extra delay up to ``reorder_delay_s`` with probability ``reorder``), and is delivered twice with
probability ``duplicate``.
Every draw comes from ``numpy.random.Generator``s seeded with ``seed``: same inputs, same output. Bit errors
come from their own stream (a child of ``seed``), so turning ``ber`` on does not change which packets are lost.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

MIN_RATE_BPS = 1.0
"""The slowest link accepted (bit/s): below it a packet's transmission time is not a useful number (1e-306 bit/s
gives infinite arrival times)."""


@dataclass(frozen=True)
class LinkConfig:
    """Parameters of the simulated link (rates in bit/s, times in s, probabilities in [0, 1])."""

    seed: int = 0
    data_rate_bps: float = 2.0e6
    latency_s: float = 0.0
    contacts: tuple[tuple[float, float], ...] = ()
    loss: float = 0.0
    burst_p: float = 0.0
    burst_r: float = 0.5
    burst_loss_good: float = 0.0
    burst_loss_bad: float = 1.0
    ber: float = 0.0
    reorder: float = 0.0
    reorder_delay_s: float = 0.05
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():  # TOML gives any type: a number where a number belongs
            if name not in ("contacts", "seed", "name") and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"{name} must be a number, got {v!r}")
        object.__setattr__(self, "contacts", _contacts(self.contacts))
        if not (math.isfinite(self.data_rate_bps) and self.data_rate_bps >= MIN_RATE_BPS):
            raise ValueError(
                f"data_rate_bps must be a finite rate of at least {MIN_RATE_BPS:g} bit/s, got {self.data_rate_bps}"
            )
        for name in ("latency_s", "reorder_delay_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0, got {v}")
        for name in (
            "loss",
            "burst_p",
            "burst_r",
            "burst_loss_good",
            "burst_loss_bad",
            "ber",
            "reorder",
            "duplicate",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
        last = -math.inf
        for a, b in self.contacts:
            if not (a < b and a >= last):
                raise ValueError(f"contact windows must be increasing, non-overlapping (start, end): {self.contacts}")
            last = b
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a whole number in [0, 2**63), got {self.seed!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["contacts"] = [list(c) for c in self.contacts]
        return d


def _contacts(value: object) -> tuple[tuple[float, float], ...]:
    """Contact windows as ((start_s, end_s), ...) from any sequence of pairs of numbers; ValueError saying what
    ``contacts`` must be otherwise (a TOML file can give it anything)."""

    def number(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    pairs = value if isinstance(value, list | tuple) else None
    if pairs is None or not all(isinstance(w, list | tuple) and len(w) == 2 and all(map(number, w)) for w in pairs):
        raise ValueError(
            "contacts must be a list of [start_s, end_s] windows in seconds, e.g. [[0.0, 600.0], [5400.0, 6000.0]] "
            f"(empty: always in contact), got {value!r}"
        )
    return tuple((float(a), float(b)) for a, b in pairs)


TOP_LEVEL = ("link", "description")
"""What a link file may hold outside ``[link]``: the table itself and a one-line ``description`` (``edgeae links``)."""


def load_link(path: str | Path) -> LinkConfig:
    """A :class:`LinkConfig` from a preset name (``loss20``; ``edgeae links``) or a TOML file with a
    ``[link]`` table (keys = the dataclass fields; anything else at the top level but ``description`` is
    refused), or with those keys at the top level."""
    from edgeae.resolve import link_path

    p = link_path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"link file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"link file {p} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"link file {p} is not a TOML text file (not UTF-8 text)") from None
    except IsADirectoryError:
        raise ValueError(f"link file {p} is a directory, not a TOML file") from None
    table = doc.get("link", doc)
    if not isinstance(table, dict):
        raise ValueError(f"link file {p}: 'link' must be a table ([link] with key = value lines), got {table!r}")
    if "link" in doc:  # a mistyped table ([links], [lnk]) or a key above [link] would be a setting lost unseen
        stray = sorted(set(doc) - set(TOP_LEVEL))
        if stray:
            raise ValueError(
                f"link file {p}: unknown top-level keys or tables {stray}; the settings go in [link] "
                f"(top level allows only {', '.join(TOP_LEVEL)})"
            )
    else:
        table = {k: v for k, v in table.items() if k != "description"}
    known = {f.name for f in fields(LinkConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"link file {p}: unknown keys {unknown}; allowed: {sorted(known)}")
    try:
        return LinkConfig(**table)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"link file {p}: {exc}") from None


@dataclass
class LinkStats:
    """What happened on the link, in packets and bytes."""

    offered_packets: int = 0
    offered_bytes: int = 0
    sent_packets: int = 0
    sent_bytes: int = 0
    unsent_packets: int = 0
    lost_packets: int = 0
    lost_bytes: int = 0
    corrupted_packets: int = 0
    corrupted_bytes: int = 0
    flipped_bits: int = 0
    duplicated_packets: int = 0
    reordered_packets: int = 0
    delivered_packets: int = 0
    delivered_bytes: int = 0
    last_arrival_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _flip_bits(packet: bytes, ber: float, rng: np.random.Generator) -> tuple[bytes, int]:
    nbits = len(packet) * 8
    k = int(rng.binomial(nbits, ber)) if ber > 0 else 0
    if k == 0:
        return packet, 0
    pos = np.unique(rng.integers(0, nbits, size=k))
    buf = np.frombuffer(packet, dtype=np.uint8).copy()
    np.bitwise_xor.at(buf, pos // 8, (0x80 >> (pos % 8)).astype(np.uint8))
    return buf.tobytes(), len(pos)


def _next_start(t: float, duration: float, contacts: Sequence[tuple[float, float]]) -> float | None:
    """Earliest time >= t at which a transmission of ``duration`` fits in a contact window."""
    if not contacts:
        return t
    for a, b in contacts:
        s = max(t, a)
        if s + duration <= b:
            return s
    return None


def simulate(
    packets: Sequence[bytes], config: LinkConfig, start_time: float = 0.0
) -> tuple[list[tuple[float, bytes]], LinkStats]:
    """Send ``packets`` over the link; returns the deliveries ``(arrival_time_s, bytes)`` by arrival time."""
    rng = np.random.default_rng(config.seed)
    # bit errors from their own stream: which packets are lost, reordered or duplicated does not depend on ``ber``
    bit_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(1)[0])
    stats = LinkStats()
    out: list[tuple[float, int, bytes]] = []
    t = float(start_time)
    bad = False
    for i, pkt in enumerate(packets):
        stats.offered_packets += 1
        stats.offered_bytes += len(pkt)
        tx = len(pkt) * 8 / config.data_rate_bps
        s = _next_start(t, tx, config.contacts)
        if s is None:
            stats.unsent_packets += 1
            continue
        t = s + tx
        stats.sent_packets += 1
        stats.sent_bytes += len(pkt)
        # the same number of draws per packet whatever the outcome keeps runs comparable across settings
        u_loss, u_ge, u_ro, u_dup, u_delay, u_delay2 = rng.random(6)
        if config.burst_p > 0 or config.burst_loss_good > 0:  # the channel starts (and with burst_p 0 stays) good
            bad = (u_ge >= config.burst_r) if bad else (u_ge < config.burst_p)
            p_state = config.burst_loss_bad if bad else config.burst_loss_good
            lost = u_loss < 1.0 - (1.0 - config.loss) * (1.0 - p_state)
        else:
            lost = u_loss < config.loss
        if lost:
            stats.lost_packets += 1
            stats.lost_bytes += len(pkt)
            continue
        data, flips = _flip_bits(pkt, config.ber, bit_rng)
        if flips:
            stats.corrupted_packets += 1
            stats.corrupted_bytes += len(pkt)
            stats.flipped_bits += flips
        arrival = t + config.latency_s
        if u_ro < config.reorder:
            arrival += u_delay * config.reorder_delay_s
        if not math.isfinite(arrival):
            raise ValueError(
                f"link: packet {i} would arrive at {arrival} s (sent at {t} s, latency_s {config.latency_s}, "
                f"data_rate_bps {config.data_rate_bps}): times must stay finite"
            )
        out.append((arrival, i, data))
        if u_dup < config.duplicate:
            stats.duplicated_packets += 1
            out.append((arrival + u_delay2 * max(config.reorder_delay_s, tx), i, data))
    out.sort(key=lambda r: (r[0], r[1]))
    last = -1
    for _, i, data in out:
        stats.delivered_packets += 1
        stats.delivered_bytes += len(data)
        if i < last:
            stats.reordered_packets += 1
        last = max(last, i)
    stats.last_arrival_s = float(out[-1][0]) if out else 0.0
    return [(a, d) for a, _, d in out], stats
