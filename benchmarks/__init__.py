"""edgeae benchmarks: speed, memory and quality against every baseline. Run ``python -m benchmarks``."""
