"""The one seam between services and the task queue. Services say which task
to run; only this module knows where tasks live. The import is lazy because
the task module builds the app for its consumer."""
from __future__ import annotations


def enqueue(task_name: str, *args, delay: float = 0) -> None:
    """Run the named task in the background (inline when the queue is
    immediate), after `delay` seconds when given."""
    import tasks

    task = getattr(tasks, task_name)
    if delay > 0:
        task.schedule(args, delay=delay)
    else:
        task(*args)
