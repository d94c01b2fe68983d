"""The evaluation backends: the native engine and COCOeval (pycocotools or faster-coco-eval).

Each implements :class:`ignite_det.backends.base.EvaluationBackend`; this registry is the one place that knows
them by name. Classes are imported when asked for, so that a backend's library is needed only when
it is used.
"""

from __future__ import annotations

from importlib import import_module

from ignite_det.backends.base import EvaluationBackend

# name -> "module:class"; a new backend is a module and a line here.
_REGISTRY = {
    "native": "ignite_det.backends.native.backend:NativeBackend",
    "pycocotools": "ignite_det.backends.cocoeval:PycocotoolsBackend",
    "faster_coco_eval": "ignite_det.backends.cocoeval:FasterCocoEvalBackend",
}

BACKENDS = tuple(_REGISTRY)


def backend_class(name: str) -> type[EvaluationBackend]:
    """The class of the backend called ``name``, checked to be usable.

    Raises:
        ValueError: for a name that is not one of :data:`BACKENDS`.
        ModuleNotFoundError: when the backend's library is not installed (the message says what to install).
    """
    if name not in _REGISTRY:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    module, _, attribute = _REGISTRY[name].partition(":")
    cls = getattr(import_module(module), attribute)
    cls.check_installed()
    return cls
