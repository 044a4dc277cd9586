"""The engine's hooks: ordered Jobs and handoffs at named points, and handoffs given back on a rollback.

A hook is asked to move on (``RunHook``) on every pass until the world shows it
done; the I/O layer's step is idempotent and does the next stage only, so asking
again is safe, and a restarted operator continues from what the world shows.
"""

from __future__ import annotations

import datetime

from bluegreen.api.durations import format_duration
from bluegreen.api.spec import Hook, HookPoint, duration
from bluegreen.api.status import HookPhase, HookStatus, Phase
from bluegreen.engine.types import HookObservation, RunHook
from bluegreen.engine.work import Pass

HOOK_POLL = datetime.timedelta(seconds=10)  # a safety net: watches on the hooks' Jobs and workloads wake it


def run_at(work: Pass, point: HookPoint) -> bool:
    """Run spec.hooks at ``point`` in order; True once all succeeded. A failed hook rolls back."""
    for hook in work.spec.hooks_at(point):
        state = work.status.hook(hook.name)
        if state is not None and state.phase == HookPhase.SUCCEEDED:
            continue
        seen = work.observed.hooks.get(hook.name) or HookObservation(state="Missing")
        if state is None:
            state = HookStatus(name=hook.name, at=point.value, phase=HookPhase.RUNNING, started_at=work.now)
            what = f"hand {_hook_what(hook)} over to green" if hook.handoff is not None else _hook_what(hook)
            work.event("HookStarted", f"hook {hook.name} ({point.value}): {what}")
        if seen.state == "Succeeded":
            set_hook(work, state.model_copy(update={"phase": HookPhase.SUCCEEDED, "finished_at": work.now,
                                                     "message": seen.message}))
            work.event("HookSucceeded", f"hook {hook.name} ({point.value}): {seen.message or 'done'}")
            continue
        limit = _hook_limit(hook)
        started = state.started_at or work.now
        failure = seen.message if seen.state == "Failed" else None
        if failure is None and limit is not None and work.now >= started + limit:
            failure = f"not done after {format_duration(limit)}: {seen.message or 'no progress'}"
        if failure is not None:
            set_hook(work, state.model_copy(update={"phase": HookPhase.FAILED, "finished_at": work.now,
                                                     "message": failure}))
            work.goto(Phase.ROLLING_BACK, f"hook {hook.name} ({point.value}) failed, rolling back to blue: {failure}",
                      warning=True)
            work.done = False  # the rollback starts in this same pass
            return False
        set_hook(work, state.model_copy(update={"message": seen.message}))
        work.act(RunHook(name=hook.name))
        work.wake(work.now + HOOK_POLL if limit is None else min(work.now + HOOK_POLL, started + limit))
        work.wait(f"hook {hook.name} ({point.value}): {seen.message or 'starting'}")
        return False
    return True


def hand_back(work: Pass) -> bool:
    """After a rollback: every handoff that began goes back (green down, then blue up), last first."""
    for hook in reversed(work.spec.hooks):
        state = work.status.hook(hook.name)
        if hook.handoff is None or state is None or state.phase in {HookPhase.REVERTED, HookPhase.HAND_BACK_FAILED}:
            continue
        seen = work.observed.hooks.get(hook.name) or HookObservation(state="Missing")
        if seen.state == "Failed":  # nothing more can be done by moving it: say so and finish the rollback
            message = f"could not hand {_hook_what(hook)} back: {seen.message}; restore it by hand"
            set_hook(work, state.model_copy(update={"phase": HookPhase.HAND_BACK_FAILED, "finished_at": work.now,
                                                     "message": message}))
            work.event("HookHandBackFailed", f"hook {hook.name}: {message}", warning=True)
            continue
        if state.phase != HookPhase.REVERTING:
            state = state.model_copy(update={"phase": HookPhase.REVERTING, "finished_at": None})
            work.event("HookReverting", f"hook {hook.name}: handing {_hook_what(hook)} back to blue")
        if seen.state == "Succeeded":
            set_hook(work, state.model_copy(update={"phase": HookPhase.REVERTED, "finished_at": work.now,
                                                     "message": seen.message}))
            work.event("HookReverted", f"hook {hook.name}: {seen.message or 'handed back to blue'}")
            continue
        set_hook(work, state.model_copy(update={"message": seen.message}))
        work.act(RunHook(name=hook.name, reverse=True))
        work.wake(work.now + HOOK_POLL)
        work.wait(f"handing {_hook_what(hook)} back to blue: {seen.message or 'starting'}")
        return False
    return True


def _hook_what(hook: Hook) -> str:
    if hook.handoff is not None:
        return f"{hook.handoff.kind.value} {hook.handoff.namespace}/{hook.handoff.name}"
    return f"Job in {hook.cluster.value}"


def _hook_limit(hook: Hook) -> datetime.timedelta | None:
    """A handoff's deadline (each side may take its timeout); a Job's own timeout is judged where it runs."""
    if hook.handoff is not None:
        return 2 * duration(hook.handoff.timeout)
    return None


def set_hook(work: Pass, state: HookStatus) -> None:
    others = [h for h in work.status.hooks if h.name != state.name]
    order = {hook.name: index for index, hook in enumerate(work.spec.hooks)}
    work.update(hooks=sorted([*others, state], key=lambda h: order.get(h.name, len(order))))
