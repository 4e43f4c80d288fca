"""Link simulator: determinism, accounting, loss rates, bursts, bit errors, windows, TOML loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.ground.link import LinkConfig, load_link, simulate

PKTS = [bytes([i % 256]) * 100 for i in range(2000)]


def test_deterministic_from_seed() -> None:
    cfg = LinkConfig(seed=4, loss=0.1, ber=1e-4, reorder=0.2, duplicate=0.05, burst_p=0.01, burst_r=0.3)
    a, sa = simulate(PKTS, cfg)
    b, sb = simulate(PKTS, cfg)
    assert a == b and sa == sb
    c, _ = simulate(PKTS, LinkConfig(seed=5, loss=0.1))
    assert c != a


def test_perfect_link_delivers_in_order_at_rate() -> None:
    out, st = simulate(PKTS[:10], LinkConfig(data_rate_bps=8000, latency_s=2.0))
    assert [d for _, d in out] == PKTS[:10]
    assert out[0][0] == pytest.approx(0.1 + 2.0)  # 800 bits at 8 kbit/s, then the latency
    assert out[-1][0] == pytest.approx(1.0 + 2.0)
    assert st.offered_bytes == st.sent_bytes == st.delivered_bytes == 1000
    assert st.lost_packets == st.corrupted_packets == st.reordered_packets == 0


def test_independent_loss_rate_and_accounting() -> None:
    out, st = simulate(PKTS, LinkConfig(seed=1, loss=0.2))
    assert 0.17 < st.lost_packets / st.sent_packets < 0.23
    assert st.delivered_packets == len(out) == st.sent_packets - st.lost_packets
    assert st.offered_bytes == st.sent_bytes == st.lost_bytes + st.delivered_bytes


def test_gilbert_elliott_losses_come_in_bursts() -> None:
    burst = LinkConfig(seed=2, burst_p=0.02, burst_r=0.2)  # mean loss = p / (p + r) ≈ 9 %, runs of ~5
    out, st = simulate([bytes([i >> 8, i & 255]) * 10 for i in range(5000)], burst)
    got = {int.from_bytes(d[:2], "big") for _, d in out}
    lost = np.array(sorted(set(range(5000)) - got))
    runs = np.split(lost, np.flatnonzero(np.diff(lost) != 1) + 1)
    assert 0.05 < st.lost_packets / 5000 < 0.14
    assert np.mean([len(r) for r in runs]) > 3.0  # independent loss at 9 % gives ~1.1


def test_bit_errors_at_ber() -> None:
    out, st = simulate(PKTS, LinkConfig(seed=3, ber=1e-4))
    # 800 bits per packet at 1e-4: P(any flip) = 1 - (1 - 1e-4)**800 ≈ 7.7 %
    assert 0.05 < st.corrupted_packets / len(PKTS) < 0.10
    changed = sum(d != PKTS[i] for i, (_, d) in enumerate(out))
    assert changed == st.corrupted_packets
    assert st.flipped_bits >= st.corrupted_packets


def test_duplicates_and_reordering() -> None:
    out, st = simulate(PKTS, LinkConfig(seed=6, duplicate=0.1, reorder=0.3, reorder_delay_s=0.01))
    assert st.delivered_packets == len(PKTS) + st.duplicated_packets
    assert 0.07 < st.duplicated_packets / len(PKTS) < 0.13
    assert st.reordered_packets > 50
    assert [t for t, _ in out] == sorted(t for t, _ in out)


def test_contact_windows() -> None:
    # 100-byte packets at 8 kbit/s take 0.1 s; windows hold 5 and then 3 packets
    cfg = LinkConfig(data_rate_bps=8000, contacts=((0.0, 0.55), (10.0, 10.3)))
    out, st = simulate(PKTS[:20], cfg)
    assert st.sent_packets == 8 and st.unsent_packets == 12
    assert out[5][0] == pytest.approx(10.1)


def test_config_validation_and_toml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loss"):
        LinkConfig(loss=1.5)
    with pytest.raises(ValueError, match="contact"):
        LinkConfig(contacts=((5.0, 1.0),))
    p = tmp_path / "l.toml"
    p.write_text("[link]\nseed = 3\nloss = 0.05\ncontacts = [[0.0, 600.0]]\n")
    assert load_link(p) == LinkConfig(seed=3, loss=0.05, contacts=((0.0, 600.0),))
    p.write_text("[link]\nlos = 0.05\n")
    with pytest.raises(ValueError, match=r"l\.toml: unknown keys \['los'\]"):
        load_link(p)


def test_shipped_link_files_load() -> None:
    import edgeae.ground

    files = sorted((Path(edgeae.ground.__file__).parent / "links").glob("*.toml"))
    assert len(files) >= 3
    for f in files:
        load_link(f)
