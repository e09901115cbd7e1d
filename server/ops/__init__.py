"""Operations: Prometheus metrics, the audit log, rate limits and subscription slots."""
