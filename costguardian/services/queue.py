"""The one seam between services and the task queue. Services say which task
to run; only this module knows where tasks live. The import is lazy because
the task module builds the app for its consumer.

The request id of the work that enqueues (observability.context) travels
with the message as one extra keyword argument, which the queue's
pre-execute hook (tasks/__init__.py) takes out again: task functions keep
their signatures, and the consumer's log lines for the task carry the id."""
from __future__ import annotations

from costguardian.observability import context


def enqueue(task_name: str, *args, delay: float = 0) -> None:
    """Run the named task in the background (inline when the queue is
    immediate), after `delay` seconds when given."""
    import tasks

    task = getattr(tasks, task_name)
    request_id = context.request_id.get()
    carried = {context.TASK_KWARG: request_id} if request_id else {}
    if delay > 0:
        task.schedule(args, carried or None, delay=delay)
    else:
        task(*args, **carried)
