"""The public surface: ``ignite_det.__all__`` is pinned, every name in it exists, and each public object
says it comes from ``ignite_det`` (as httpx's ``tests/test_exported_members.py`` does).

A change to this list is a change of the public API: add the name here on purpose, with a changelog line.
"""

import inspect

import ignite_det

PUBLIC = [
    "Backend",
    "BoxFormat",
    "COCO_KEYPOINT_SIGMAS",
    "IouType",
    "KEYPOINT_STAT_NAMES",
    "STAT_NAMES",
    "ClassResult",
    "CocoMetric",
    "CocoReportHandler",
    "CocoResult",
    "DetectionImagesHandler",
    "ErrorAnalysis",
    "EvaluationArtifactHandler",
    "F1Point",
    "PerImage",
    "WandBReport",
    "__version__",
    "attach_wandb_logging",
]


def test_all_is_the_pinned_public_surface():
    assert sorted(ignite_det.__all__) == sorted(PUBLIC)
    assert len(set(ignite_det.__all__)) == len(ignite_det.__all__)


def test_every_exported_name_exists_and_star_import_gives_exactly_them():
    namespace: dict = {}
    exec("from ignite_det import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == sorted(PUBLIC)


def test_public_classes_and_functions_are_defined_inside_the_package():
    for name in PUBLIC:
        member = getattr(ignite_det, name)
        if isinstance(member, type) or inspect.isfunction(member):  # not the Literal aliases (typing's own)
            assert member.__module__.startswith("ignite_det."), name
