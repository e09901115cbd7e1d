"""Deployment files (Prometheus, Alertmanager, Grafana, systemd) and the `make monitoring` runner."""
