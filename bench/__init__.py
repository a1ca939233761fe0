"""The streaming benchmark: `make bench` (full) or `make bench-quick` (under a minute)."""
