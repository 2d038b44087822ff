"""Timing side by side: every step once per round in rotating order, peak memory per step, a held thread count.

``interleave`` is the one timing loop of the project: ``effdet-plugin benchmark`` (each step a model on a runtime),
``accuracy``'s cost columns and ``tools/yolov5_benchmark.py`` (the classic host) all time through it, so machine drift
hits every step alike. No host is imported here: the classic host's interpreter uses it as it is.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA kernels run asynchronously); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of the calls made inside ``track()``: CUDA allocator peak on GPU, process RSS high-water on CPU.

    ``peak_mb`` is the absolute peak; ``extra_mb`` the peak above the level just before each call (on CPU an
    approximation: the allocator may reuse memory freed by earlier calls).
    """

    _CLEAR_REFS = Path("/proc/self/clear_refs")  # writing 5 resets the kernel's RSS high-water mark (Linux >= 4.0)

    def __init__(self, device: torch.device):
        """Initialize for ``device``."""
        self.device = device
        self.peak_mb = 0.0
        self.extra_mb = 0.0

    @staticmethod
    def _status_kb(field: str) -> float | None:
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return float(line.split()[1])
        return None

    def _cpu_now_peak(self) -> tuple[float, float]:
        rss, hwm = self._status_kb("VmRSS"), self._status_kb("VmHWM")
        if rss is None or hwm is None:  # not Linux: psutil RSS and the lifetime peak from getrusage
            import resource

            import psutil

            rss = psutil.Process().memory_info().rss / 1024
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
        return rss / 1024, hwm / 1024

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Record the peak memory of the enclosed work into ``peak_mb``/``extra_mb`` (keeping the maximum)."""
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device) / 2**20
            yield
            sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            with contextlib.suppress(OSError):
                self._CLEAR_REFS.write_text("5")
            before, _ = self._cpu_now_peak()
            yield
            _, peak = self._cpu_now_peak()
        self.peak_mb = max(self.peak_mb, peak)
        self.extra_mb = max(self.extra_mb, peak - before)


def interleave(
    steps: Mapping[Hashable, Callable[[], object]],
    device: torch.device,
    repeats: int,
    warmup: int,
    progress=None,
    memory: Mapping[Hashable, PeakMemory] | None = None,
) -> dict[Hashable, list[float]]:
    """Run each step once per round, the order rotating from round to round; return each step's seconds over the
    ``repeats`` rounds after the first ``warmup``, in round order.

    Rotation keeps any step from always running right after the same other one. ``memory`` tracks the peak memory of
    the steps it names; ``progress`` (a tqdm-like bar) is advanced once per step run.
    """
    names = list(steps)
    times: dict[Hashable, list[float]] = {n: [] for n in names}
    memory = memory or {}
    for r in range(warmup + repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            with memory[name].track() if name in memory else contextlib.nullcontext():
                sync(device)
                t = time.perf_counter()
                steps[name]()
                sync(device)
                dt = time.perf_counter() - t
            if r >= warmup:
                times[name].append(dt)
            if progress is not None:
                progress.update()
    return times


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run the enclosed code at ``n`` torch CPU threads (None: as set), restoring the count in force on entry."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def keep_threads() -> contextlib.AbstractContextManager[None]:
    """Restore on exit the torch thread count in force on entry: Ultralytics' select_device (run to resolve a device
    and by every export) sets it to its NUM_THREADS (cores - 1), and timings run at ``--threads`` or torch's own."""
    return threads(None)
