"""Diagnosis: what a failed device connection means and how to fix it."""

from cyan.diagnose.stages import Diagnosis, diagnose

__all__ = ["Diagnosis", "diagnose"]
