"""Failover under faults: success rate and added latency at a fixed load, per fault (see README.md)."""
