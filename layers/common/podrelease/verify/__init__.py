"""The verification gate: what is attached to a digest, and whether policy accepts it (signatures, SBOM, scan)."""
