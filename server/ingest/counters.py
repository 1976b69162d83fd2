"""Counters the ingest worker keeps for metrics and health checks; thread-safe."""

import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from protocol import AckResult

# Upper bounds of the batch-size histogram buckets; the last bucket is open.
BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000)
_RESULT_NAMES = {result: f"result_{result.value}" for result in AckResult}


class IngestCounters:
    """Monotonic counts of what the worker received, decided and sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._batch_sizes: Counter[str] = Counter()
        self._largest_batch = 0

    def add(self, name: str, amount: int = 1) -> None:
        """Increase one counter."""
        with self._lock:
            self._counts[name] += amount

    def add_all(self, amounts: Mapping[str, int]) -> None:
        """Increase several counters at once (one lock for a whole batch)."""
        nonzero = {name: amount for name, amount in amounts.items() if amount}
        with self._lock:
            self._counts.update(nonzero)

    def results(self, results: Iterable[AckResult]) -> None:
        """Count the outcomes of a batch of taps."""
        tally = Counter(_RESULT_NAMES[r] for r in results)
        with self._lock:
            self._counts.update(tally)

    def batch(self, size: int) -> None:
        """Count one recorded batch of `size` taps."""
        bucket = next((f"le_{b}" for b in BATCH_BUCKETS if size <= b), "le_inf")
        with self._lock:
            self._counts["batches"] += 1
            self._counts["batched_taps"] += size
            self._batch_sizes[bucket] += 1
            self._largest_batch = max(self._largest_batch, size)

    def get(self, name: str) -> int:
        """The current value of one counter (0 if never counted)."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """All counters at one instant, including the batch-size histogram."""
        with self._lock:
            data = dict(self._counts)
            data.update({f"batch_size_{k}": v for k, v in self._batch_sizes.items()})
            data["batch_size_max"] = self._largest_batch
        return data
