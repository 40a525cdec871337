"""`make bench`: the control plane measured on the local runtime (see docs/bench.md)."""
