"""Diagnosis: what a failed device connection means and how to fix it."""

from cyan.diagnose.stages import Diagnosis, diagnose, diagnose_device_side, explain_stage

__all__ = ["Diagnosis", "diagnose", "diagnose_device_side", "explain_stage"]
