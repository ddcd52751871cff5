"""What one featurize run did: the report the driver returns, the CLI prints and the shard writer counts.

Its own module because both the driver and the shard writer (which counts what each commit made
durable) fill it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from photocorpus.notebook import HtmlReport

__all__ = ["FeaturizeReport", "peak_rss_mb"]


@dataclass
class FeaturizeReport(HtmlReport):
    """What one run did. ``computed`` counts photos that got new rows in this run."""

    model: str
    feature_sets: list[str]
    backend: str = ""
    pending: int = 0
    computed: int = 0
    failed: int = 0
    shards: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    compacted: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0  # this process
    # largest reaped child: in a fresh featurize command, the largest decode worker
    workers_peak_rss_mb: float = 0.0
    executor: str = "local"
    shards_failed: int = 0  # Ray batches lost after Ray's retries: their photos stay pending

    @property
    def images_per_s(self) -> float:
        done = self.computed + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "feature_sets": self.feature_sets,
            "backend": self.backend,
            "pending": self.pending,
            "computed": self.computed,
            "failed": self.failed,
            "failures": self.failures,
            "shards": self.shards,
            "compacted": self.compacted,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "workers_peak_rss_mb": round(self.workers_peak_rss_mb, 1),
            "executor": self.executor,
            "shards_failed": self.shards_failed,
        }


def peak_rss_mb(children: bool = False) -> float:
    """Peak RSS of this process (or of its largest child), in MiB.

    For this process, Linux's ``VmHWM`` is read first: ``ru_maxrss`` survives ``execve``, so a
    command started by a big process (a benchmark holding gigabytes) would report its parent's peak.
    """
    if not children:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0  # kB
        except OSError:  # not Linux: fall back to getrusage
            pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux
