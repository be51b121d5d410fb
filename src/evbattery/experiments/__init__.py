"""Runs of several steps over the layers below: the demo, the bias sweep, and the benchmarks with their
baselines."""
