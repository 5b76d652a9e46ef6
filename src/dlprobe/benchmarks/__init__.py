"""Benchmarks of the lab's probes against plain PyTorch and reference libraries."""
