"""Benchmarks: ``make bench`` (``python -m bench``) runs them and prints figures and ratios.

Each benchmark is a module here with ``run(args) -> list[Figure]``; it measures the project's
code and the named baseline in the same run, and reports medians and ratios (the machines are
shared and noisy: ratios and medians, not single times). Nothing here is a test: speed is
measured, never asserted.
"""
