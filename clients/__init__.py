"""Clients of the mining-fleet health server: the typed gRPC client, the CLI and the miner collector."""
