"""What a measurement ran on: CPU, cores, threads, GPU; and how busy the machine was.

Both reports (``evaluate``'s and ``bench``'s) record the machine through :class:`Hardware`, written one way:
the keys ``cpu``, ``cores``, ``threads`` and ``gpu`` in the report's ``meta``. Reports written before this
carried either those keys (bench) or one ``hardware`` string (evaluate); :meth:`Hardware.from_meta` reads
both.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not every core of the host."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def busy_cores(interval: float = 0.5) -> float | None:
    """How many cores' worth of CPU time other processes used over ``interval`` seconds (Linux /proc/stat).

    Call it while this process is idle. None where /proc/stat is not readable.
    """

    def sample() -> tuple[float, float]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [float(v) for v in f.readline().split()[1:9]]  # user .. steal; guest is inside user
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round((1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1), 2)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclass
class Hardware:
    """The machine a report was measured on."""

    cpu: str
    cores: int | None = None
    threads: int | None = None  # intra-op threads per model, where the measurement set them
    gpu: str | None = None  # the CUDA device the models ran on, if any

    @classmethod
    def detect(cls, *, threads: int | None = None, device: str | None = None) -> Hardware:
        """This machine; ``device`` (a torch device string) names the GPU when it is a CUDA one."""
        gpu = None
        if device is not None and str(device).startswith("cuda"):
            import torch

            index = torch.device(device).index or 0
            gpu = f"{torch.cuda.get_device_name(index)} ({device})"
        return cls(cpu=cpu_name(), cores=available_cores(), threads=threads, gpu=gpu)

    def describe(self) -> str:
        """In words, e.g. ``AMD EPYC 7B13, 1 thread of 2 cores`` or ``NVIDIA H100 (cuda:0); AMD EPYC ...``."""
        text = self.cpu
        if self.threads:
            text += f", {self.threads} thread{'s' if self.threads != 1 else ''}"
            text += f" of {self.cores} cores" if self.cores else ""
        elif self.cores:
            text += f", {self.cores} cores"
        return f"{self.gpu}; {text}" if self.gpu else text

    def to_meta(self) -> dict[str, Any]:
        """The keys this writes into a report's ``meta`` (absent values left out)."""
        out: dict[str, Any] = {"cpu": self.cpu, "cores": self.cores}
        if self.threads is not None:
            out["threads"] = self.threads
        if self.gpu is not None:
            out["gpu"] = self.gpu
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Hardware | None:
        """From a report's ``meta``: the keys above, or an older evaluate report's ``hardware`` string."""
        if meta.get("cpu"):
            return cls(
                cpu=str(meta["cpu"]),
                cores=_int(meta.get("cores")),
                threads=_int(meta.get("threads")),
                gpu=meta.get("gpu"),
            )
        if isinstance(meta.get("hardware"), str) and meta["hardware"]:
            return cls(cpu=meta["hardware"])
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
