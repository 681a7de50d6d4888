"""Provider SDK, supervisor and kvmem tests (real NATS)."""
