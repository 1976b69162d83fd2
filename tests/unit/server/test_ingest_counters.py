"""Ingest counters."""

from protocol import AckResult
from server.ingest.counters import IngestCounters


def test_counts_results_and_batch_sizes() -> None:
    counters = IngestCounters()
    counters.add("received", 3)
    counters.results([AckResult.ACCEPTED, AckResult.DUPLICATE])
    counters.add_all({"acks_published": 2, "acks_queued_offline": 0})
    counters.batch(1)
    counters.batch(450)

    snapshot = counters.snapshot()

    assert snapshot["received"] == 3
    assert snapshot["result_accepted"] == snapshot["result_duplicate"] == 1
    assert snapshot["acks_published"] == 2
    assert "acks_queued_offline" not in snapshot  # zero amounts add no counter
    assert snapshot["batches"] == 2
    assert snapshot["batched_taps"] == 451
    assert snapshot["batch_size_le_1"] == snapshot["batch_size_le_500"] == 1
    assert snapshot["batch_size_max"] == 450
    assert counters.get("never") == 0
