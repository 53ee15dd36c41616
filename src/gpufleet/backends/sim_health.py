"""The simulator's health counters for one GPU: throttle time by reason, memory repair (row
remapping on Ampere and newer, page retirement before), PCIe replays, video engines, pipe
activity and NVLink / XGMI links.

sim.py drives it: `step()` once per physics step with what the GPU is doing (power-capped,
hot, idle, in a multi-GPU job), `corrected()` / `uncorrected()` when its ECC model draws an
error, `reset()` when the GPU comes back from a reset. Every counter only grows; "pending"
flags clear only at a reset, as on real hardware. All randomness comes from the generator
sim.py hands in (its own stream, so adding these readings left the older ones' sequences as
they were).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..snapshot import GpuLink
from .sim_profiles import GpuModel

# Rates per GPU-hour on a healthy board; a fault profile's roles raise them.
RATE_PCIE_REPLAY = 0.5
RATE_LINK_ERROR = 0.02
RATE_FLAKY_LINK = 240.0  # CRC errors per hour on a flaky link
SPARE_ROWS = 8  # uncorrectable remaps a bank can take before remapping fails
ROW_REMAP_SHARE = 0.15  # share of corrected errors that end in a correctable row remap


@dataclass(slots=True)
class _Link:
    up: bool = True
    tx: float = 0.0
    rx: float = 0.0
    rate: float = 0.0  # busier direction, bytes/s, last step
    crc_flit: int = 0
    crc_data: int = 0
    replay: int = 0
    recovery: int = 0


@dataclass(slots=True)
class Health:
    model: GpuModel
    flaky_link: bool = False
    failing_memory: bool = False
    throttle: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("power", "thermal", "sync_boost", "board_limit", "low_utilization", "reliability"), 0.0))
    pcie_replays: int = 0
    ecc_history: tuple[int, int] = (0, 0)  # (corrected, uncorrected) before the driver loaded
    remapped: list[int] = field(default_factory=lambda: [0, 0])  # correctable, uncorrectable
    remap_pending: bool = False
    remap_failure: bool = False
    retired: list[int] = field(default_factory=lambda: [0, 0])  # single-bit, double-bit
    retire_pending: bool = False
    links: list[_Link] = field(default_factory=list)
    encoder: float = 0.0
    decoder: float = 0.0
    pipes: tuple[float, float, float] = (0.0, 0.0, 0.0)  # fp64, fp32, fp16

    def __post_init__(self) -> None:
        self.links = [_Link() for _ in range(self.model.links)]

    def settle(self, rng: random.Random, days: float) -> None:
        """A board that has been in service a while: some history in its lifetime counters."""
        self.ecc_history = (rng.choice((0, 0, 1, 3, 12)), rng.choice((0, 0, 0, 0, 1)))
        if self.model.row_remap:
            self.remapped[0] = rng.choice((0, 0, 0, 1))
        self.pcie_replays = rng.choice((0, 0, 0, 1, 4))
        for link in self.links:  # data moved since the driver loaded
            link.tx = link.rx = days * 86400.0 * self.model.link_bytes_per_s * rng.uniform(0.01, 0.05)

    def step(self, rng: random.Random, h: float, *, util: float, capped: bool, hot: bool, idle: bool,
             collective: float, decode: float) -> None:
        """Advance `h` seconds. `collective`: 0-1 share of link speed a multi-GPU job drives."""
        if capped:
            self.throttle["power"] += h
        if hot:
            self.throttle["thermal"] += h
        if idle:
            self.throttle["low_utilization"] += h
        per_h = h / 3600.0
        if rng.random() < RATE_PCIE_REPLAY * per_h:
            self.pcie_replays += rng.choice((1, 1, 2, 8))
        self.decoder = decode
        self.pipes = (util * 0.02, util * 0.3, util * 0.2)
        speed = self.model.link_bytes_per_s
        if not self.links:
            return
        # One draw per GPU and step (not per link): sampling 8 GPUs x 18 links stays cheap.
        jitter = rng.uniform(0.8, 1.0)
        load = collective * jitter if collective else 2e-5 * jitter
        for n, link in enumerate(self.links):
            skew = 1.0 - 0.015 * (n % 5)  # traffic is never spread perfectly evenly
            link.rate = load * skew * speed
            link.tx += link.rate * h
            link.rx += link.rate * 0.97 * h
        r = rng.random()
        if self.flaky_link and r < min(1.0, RATE_FLAKY_LINK * per_h):
            bad = self.links[0]
            bad.crc_flit += 1 + int(r * 1e6) % 6
            bad.replay += int(r * 1e7) % 3
            if int(r * 1e8) % 20 == 0:
                bad.recovery += 1
                bad.crc_data += 1
        elif r > 1.0 - RATE_LINK_ERROR * per_h * len(self.links):
            self.links[int(r * 1e9) % len(self.links)].replay += 1

    def corrected(self, rng: random.Random) -> None:
        """A corrected ECC error: now and then the row is remapped (or, pre-Ampere, the page retired)."""
        if rng.random() >= (0.6 if self.failing_memory else ROW_REMAP_SHARE):
            return
        if self.model.row_remap:
            self.remapped[0] += 1
        else:
            self.retired[0] += 1
            self.retire_pending = True

    def uncorrected(self) -> None:
        """An uncorrected ECC error: the row is remapped (pending a reset), or fails for lack of spares."""
        if self.model.row_remap:
            if self.remapped[1] >= SPARE_ROWS:
                self.remap_failure = True
            else:
                self.remapped[1] += 1
                self.remap_pending = True
        else:
            self.retired[1] += 1
            self.retire_pending = True

    def reset(self) -> None:
        """The GPU was reset: pending remaps and retirements took effect."""
        self.remap_pending = self.retire_pending = False

    def render(self, v: dict[str, float], *, ecc: tuple[int, int] | None, gpm: bool, nvidia: bool) -> list[GpuLink]:
        """Write the readings a real board of this model reports into `v`; return its links."""
        if nvidia:
            for reason, seconds in self.throttle.items():
                v[f"throttle_{reason}_seconds_total"] = round(seconds, 3)
            v["encoder_utilization_ratio"] = round(self.encoder, 4)
            v["decoder_utilization_ratio"] = round(self.decoder, 4)
        v["pcie_replays_total"] = float(self.pcie_replays)
        if self.model.vgpu:
            v["vgpu_licensed"] = 1.0
        if ecc is not None:
            v["ecc_corrected_errors_aggregate_total"] = float(ecc[0] + self.ecc_history[0])
            v["ecc_uncorrected_errors_aggregate_total"] = float(ecc[1] + self.ecc_history[1])
            if nvidia and self.model.row_remap:
                v["remapped_rows_correctable_total"] = float(self.remapped[0])
                v["remapped_rows_uncorrectable_total"] = float(self.remapped[1])
                v["remapped_rows_pending"] = 1.0 if self.remap_pending else 0.0
                v["remapped_rows_failure"] = 1.0 if self.remap_failure else 0.0
            elif nvidia:
                v["retired_pages_single_bit_total"] = float(self.retired[0])
                v["retired_pages_double_bit_total"] = float(self.retired[1])
                v["retired_pages_pending"] = 1.0 if self.retire_pending else 0.0
        if gpm:
            v["fp64_active_ratio"], v["fp32_active_ratio"], v["fp16_active_ratio"] = (round(p, 4) for p in self.pipes)
        links = []
        for n, link in enumerate(self.links):
            lv = {"up": 1.0 if link.up else 0.0, "speed_bytes_per_second": self.model.link_bytes_per_s,
                  "transmit_bytes_total": float(round(link.tx)), "receive_bytes_total": float(round(link.rx)),
                  "utilization_ratio": round(min(1.0, link.rate / self.model.link_bytes_per_s), 4)}
            if nvidia:
                lv.update(crc_flit_errors_total=float(link.crc_flit), crc_data_errors_total=float(link.crc_data),
                          replay_errors_total=float(link.replay), recovery_errors_total=float(link.recovery))
            links.append(GpuLink(link=n, values=lv))
        if links:
            v["nvlink_links_active"] = float(sum(1 for x in self.links if x.up))
            for key in ("transmit_bytes_total", "receive_bytes_total", "crc_flit_errors_total",
                        "crc_data_errors_total", "replay_errors_total", "recovery_errors_total"):
                got = [x.values[key] for x in links if key in x.values]
                if got:
                    v[f"nvlink_{key}"] = float(sum(got))
            v["nvlink_bytes_total"] = v["nvlink_transmit_bytes_total"] + v["nvlink_receive_bytes_total"]
        return links
