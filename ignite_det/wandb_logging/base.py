"""What every W&B handler shares: the run to log to, and a step that W&B keeps."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers.base_logger import BaseHandler
from ignite.handlers.wandb_logger import WandBLogger

StepTransform = Callable[[Engine, Any], int]


def _default_step(engine: Engine, event_name: Any) -> int:
    return engine.state.get_event_attrib_value(event_name)


class _WandBHandler(BaseHandler):
    """What both handlers share: finding the run, and a step W&B will not drop."""

    global_step_transform: StepTransform
    _warned_step = False

    def _active_run(self, logger: WandBLogger | None) -> Any:
        """The W&B run to log to, or ``None`` when there is none here: no logger on this process
        (``logger=None``, under distribution), logging disabled, or the run finished.
        """
        if logger is None:
            return None
        if not isinstance(logger, WandBLogger):  # RuntimeError, as Ignite's own WandB handlers raise
            raise RuntimeError(  # noqa: TRY004
                f"Handler '{type(self).__name__}' works only with WandBLogger, got {type(logger)}."
            )
        run = logger.run  # WandBLogger forwards to the wandb module: its active run
        if run is None or getattr(run, "disabled", False):
            return None
        return run

    def _result(self, engine: Engine, metric_name: str) -> Any:
        """The metric's result in ``engine.state.metrics``, or ``None`` with a warning."""
        result = engine.state.metrics.get(metric_name)
        if result is None:
            warnings.warn(
                f"{type(self).__name__}: metric '{metric_name}' is missing in engine's state metrics: "
                f"{list(engine.state.metrics)}; attach the CocoMetric before this handler.",
                stacklevel=3,
            )
        return result

    def _given_step(self, engine: Engine, event_name: Any) -> int:
        """``global_step_transform``'s step, checked. Every process reads it before any exchange between
        processes: a wrong one then raises on all of them, not on the logging process alone while the
        others wait for it in a gather (forever if it lives on)."""
        step = self.global_step_transform(engine, event_name)
        if not isinstance(step, numbers.Integral):
            raise TypeError(
                f"global_step must be int, got {type(step)}. Please check the output of global_step_transform."
            )
        return int(step)

    def _kept_step(self, step: int, run: Any) -> int:
        """``step``, raised to the run's current step when lower (W&B would drop the data)."""
        step, self._warned_step = kept_step(
            step,
            run,
            type(self).__name__,
            warned=self._warned_step,
            advice="Pass global_step_transform=global_step_from_engine(trainer) with the event your training logs "
            "use (e.g. Events.ITERATION_COMPLETED) so validation lines up with training.",
        )
        return step


def kept_step(step: int, run: Any, who: str, warned: bool, advice: str) -> tuple[int, bool]:
    """``step``, or the W&B run's current step when ``step`` is lower (W&B drops data logged at a lower
    step), and whether the warning that says so has been given: once per caller (``warned``), as an
    evaluation every epoch would repeat it every epoch. ``who`` names the caller, ``advice`` how to fix it."""
    current = int(run.step)
    if step >= current:
        return step, warned
    if not warned:
        warnings.warn(
            f"{who}: step {step} is lower than the W&B run's current step {current}; logging at {current} "
            f"instead (and so on for later steps), because W&B drops data logged at a lower step. {advice}",
            stacklevel=4,
        )
    return current, True


class _EvaluationCounter:
    """A step for an evaluator with no trainer: 1 for its first run, 2 for its second...

    The evaluator's own epoch restarts at 1 every ``run()``, so it cannot be the step.
    """

    def __init__(self, evaluator: Engine) -> None:
        self.count = 0
        evaluator.add_event_handler(Events.STARTED, self._increment)

    def _increment(self, _engine: Engine) -> None:
        self.count += 1

    def __call__(self, _engine: Engine, _event_name: Any) -> int:
        return self.count
