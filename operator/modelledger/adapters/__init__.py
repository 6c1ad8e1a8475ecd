"""The outside world: Kubernetes workloads and Events, Prometheus queries, the audit log."""
