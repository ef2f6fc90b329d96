"""Turning subnets into standalone, deployable models."""

from bertnas.export.extract import extract_subnet, supernet_for_arch

__all__ = ["extract_subnet", "supernet_for_arch"]
