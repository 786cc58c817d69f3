"""Cyan: a self-hosted device cloud for Particle Photon, P1 and Core devices."""

__version__ = "0.1.0"

__all__ = ["__version__"]
