"""The IoU types, one module each: its input checks and its COCO similarity (``bbox``, ``segm``, ``keypoints``).

:mod:`~ignite_det.iou.by_type` is the one place that dispatches on ``iou_type``.
"""
