"""Benchmarks against transformers (run with ``ttc-bench``; results in docs/benchmarks.md)."""
