"""ignite-det: exact COCO detection metrics for PyTorch-Ignite, logged to Weights & Biases."""

from ignite_det.error_analysis import ErrorAnalysis
from ignite_det.iou.keypoints import COCO_KEYPOINT_SIGMAS, KEYPOINT_STAT_NAMES
from ignite_det.metric import CocoMetric
from ignite_det.operating_point import F1Point
from ignite_det.params import Backend, BoxFormat, IouType
from ignite_det.per_image import PerImage
from ignite_det.result import STAT_NAMES, ClassResult, CocoResult
from ignite_det.wandb_logging.artifact import EvaluationArtifactHandler
from ignite_det.wandb_logging.attach import attach_wandb_logging
from ignite_det.wandb_logging.images import DetectionImagesHandler
from ignite_det.wandb_logging.plain_loop import WandBReport
from ignite_det.wandb_logging.report import CocoReportHandler

__version__ = "0.1.0"

__all__ = [
    "COCO_KEYPOINT_SIGMAS",
    "KEYPOINT_STAT_NAMES",
    "STAT_NAMES",
    "Backend",
    "BoxFormat",
    "ClassResult",
    "CocoMetric",
    "CocoReportHandler",
    "CocoResult",
    "DetectionImagesHandler",
    "ErrorAnalysis",
    "EvaluationArtifactHandler",
    "F1Point",
    "IouType",
    "PerImage",
    "WandBReport",
    "__version__",
    "attach_wandb_logging",
]
