"""spec.hooks[]: the I/O behind the engine's ``RunHook`` action and ``Observed.hooks``.

The engine decides when a hook runs (BeforeTraffic, AfterPromotion,
BeforeRetire; handed back on rollback) and reads each hook's state from
:meth:`HookRunner.observe`; it asks for progress with :meth:`HookRunner.advance`.
Both read the world afresh, so status stays the only memory of the engine and a
restarted operator goes on from what the clusters show:

* a **job** hook is a smoke Job under another name: the same code starts and
  judges it (:mod:`bluegreen.analysis.job`), in the cluster the hook names. Its
  object name says ``hook`` and depends on the run, so a retry starts a fresh Job
  and a hook never meets a smoke Job's object. Handing a Job back means nothing:
  reverse is Succeeded at once.
* a **handoff** moves a workload from one side to the other through Flux holds
  (:mod:`bluegreen.hooks.handoff`).

``advance`` does one stage and returns the journal lines of what it changed;
calling it again when nothing is due changes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable

from bluegreen.analysis import job as jobs
from bluegreen.api import spec as api
from bluegreen.engine.types import LABEL_UPGRADE, HookObservation
from bluegreen.hooks import handoff
from bluegreen.kube.client import KubeClient, KubeError

LABEL_HOOK = "bluegreen.io/hook"


def hook_job_name(*, owner: str, hook: str, run: int) -> str:
    """The Job's object name: ``bg-hook-<hook>-<run>-<hash>``, never a smoke Job's.

    The hashed name holds a ``:``, which a smoke Job's name cannot, so even a
    smoke Job called ``hook-<hook>`` gets another hash.
    """
    return jobs.job_object_name(upgrade=owner, job=f"hook:{hook}", run=run)


def as_smoke_job(hook: api.Hook) -> api.SmokeJob:
    """The hook's Job in the shape the smoke Job code takes (``at`` is not used there)."""
    if hook.job is None:
        raise ValueError(f"hook {hook.name!r} has no job")
    return api.SmokeJob(name=hook.name, cluster=hook.cluster, namespace=hook.job.namespace,
                        template=hook.job.template, timeout=hook.job.timeout, log_lines=hook.job.log_lines)


class HookRunner:
    """Observes and advances the hooks of one upgrade."""

    def __init__(
        self,
        spec: api.ClusterUpgradeSpec,
        *,
        management: KubeClient,
        side_client: Callable[[str], Awaitable[KubeClient]],
        owner: str,
        upgrade_namespace: str,
    ) -> None:
        self._spec = spec
        self._side_client = side_client
        self._owner = owner
        self._upgrade_namespace = upgrade_namespace
        self._handoffs = handoff.Handoffs(spec, management=management, side_client=side_client)

    async def observe(
        self, hook: api.Hook, *, reverse: bool, run: int, now: datetime.datetime
    ) -> HookObservation:
        if hook.handoff is not None:
            return await self._handoffs.observe(hook, reverse=reverse, now=now)
        if reverse:
            return HookObservation(state=handoff.SUCCEEDED, message="a Job hook has nothing to hand back")
        smoke = as_smoke_job(hook)
        try:
            client = await self._side_client(hook.cluster.value)
            seen = await jobs.observe_job(client, smoke, object_name=self._job_name(hook, run), now=now)
        except KubeError as exc:
            return HookObservation(state=handoff.RUNNING, message=f"cannot read the hook's Job in "
                                                                   f"{hook.cluster.value}: {exc}")
        return HookObservation(state=seen.state, message=seen.message)

    async def advance(self, hook: api.Hook, *, reverse: bool, run: int) -> list[str]:
        if hook.handoff is not None:
            return await self._handoffs.advance(hook, reverse=reverse)
        if reverse:
            return []
        client = await self._side_client(hook.cluster.value)
        line = await jobs.start_job(client, as_smoke_job(hook), object_name=self._job_name(hook, run),
                                    labels={LABEL_UPGRADE: self._owner, LABEL_HOOK: hook.name})
        return [f"hook {hook.name}: {line}"]

    def _job_name(self, hook: api.Hook, run: int) -> str:
        return hook_job_name(owner=self._owner, hook=hook.name, run=run)
