"""Paddock's API, generated from proto/paddock/v1 by scripts/gen-clients."""
