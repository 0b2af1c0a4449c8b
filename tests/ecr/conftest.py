"""pytest fixtures for the ECR control-plane tests (implementation in ecrlib.py)."""

from ecrlib import ecr, ecr_eu, ecr_raw, repo, server  # noqa: F401
