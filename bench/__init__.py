"""Benchmarks of the service on the local runtime, side by side with an RQ reference: `make bench`.

Prints one table and writes it as JSON to bench/results/ (see docs/performance.md)."""
