"""Benchmarks of the gateway against its floor (see bench/README.md)."""
