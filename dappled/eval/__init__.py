"""Metrics, BD-rate, rate-distortion sweeps, plots and benchmarks."""
