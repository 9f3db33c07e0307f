"""What the student learns from a derivative: trial-sequence tasks (memory goal-switching, study-test
recognition, Sternberg working memory, generic).

``get_task("memory", time_stride=10)``, ``get_task("study_test", phase=..., phases=("study", "test"))``,
``get_task("sternberg")`` or ``get_task("trials", stimulus=..., target=..., episode=...)``;
a task's ``prepare(sessions)`` returns the padded arrays (:class:`TaskData`) the training loop uses.
"""

from __future__ import annotations

from typing import Any

from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks.memory import MemoryTask, correct_responses
from b2m_neuro.tasks.recognition import StudyTestTask
from b2m_neuro.tasks.sequences import TaskData, TrialSequenceTask
from b2m_neuro.tasks.sternberg import SternbergTask

__all__ = ["MemoryTask", "StudyTestTask", "SternbergTask", "TrialSequenceTask", "TaskData", "correct_responses",
           "get_task", "known_tasks"]

_TASKS = {task.name: task for task in (MemoryTask, StudyTestTask, SternbergTask, TrialSequenceTask)}


def known_tasks() -> list[str]:
    """Names accepted by :func:`get_task`."""
    return sorted(_TASKS)


def get_task(name: str, **options: Any) -> TrialSequenceTask:
    """Build the task called ``name`` (one of :func:`known_tasks`) with its options."""
    if name not in _TASKS:
        raise TrainingError(f"unknown task {name!r}", field="task", fix=f"choose one of: {', '.join(known_tasks())}")
    try:
        return _TASKS[name](**options)
    except TypeError as error:
        raise TrainingError(f"task {name!r} does not accept these options: {error}", field="task options",
                            fix=f"see help(b2m_neuro.tasks.{_TASKS[name].__name__})") from None
