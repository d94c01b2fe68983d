"""Why the AP is not higher: TIDE's error bins, on COCOeval's matching (``coco``) or as tidecv computes them."""

from ignite_det.error_analysis.analysis import (
    ERROR_MODES,
    MAIN_ERRORS,
    SPECIAL_ERRORS,
    ClassErrors,
    ErrorAnalysis,
    ErrorMode,
    FalsePositives,
    MissedObjects,
)

__all__ = [
    "ERROR_MODES",
    "MAIN_ERRORS",
    "SPECIAL_ERRORS",
    "ClassErrors",
    "ErrorAnalysis",
    "ErrorMode",
    "FalsePositives",
    "MissedObjects",
]
