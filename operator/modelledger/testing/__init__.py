"""A real local control plane and Prometheus for tests, the demo and benchmarks (no Docker needed)."""
