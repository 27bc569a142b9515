"""Evaluation: A/B runs, metrics, judge, benchmarks and the report."""
