"""One measurement of one metric, from spec to :class:`~bluegreen.api.status.CheckResult`.

The I/O layer calls :func:`measure_metric` when the engine asks for a metric
(``RunChecks``). It picks the provider from the metric's spec through
:data:`PROVIDERS`, an explicit registry (a kind missing from it is an error,
never a fallback), measures, and judges with the pure functions of
:mod:`bluegreen.analysis.judge`.

- A plain metric measures green (``{{cluster}}`` is green's name) and judges
  that value.
- A comparative metric measures blue and green concurrently with the same
  query (``{{cluster}}`` is each side's name in turn) and judges green
  against blue (``green / blue`` or ``green - blue``); both values are kept.

It never raises for what the world does: a provider's
:class:`~bluegreen.analysis.base.MetricError` (unreachable, refused, not one
number) becomes an Inconclusive result whose message names the metric, the
side and the error. The message is written for the person reading
``kubectl describe``: ``error-rate 0.2 > max 0.01``, or
``latency: green 0.12s is 2.4x blue's 0.05s, above max 1.5``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable

from bluegreen.analysis import http, judge, prometheus
from bluegreen.analysis.base import CheckContext, MetricError, MetricProvider
from bluegreen.analysis.placeholders import Placeholders
from bluegreen.api import spec
from bluegreen.api.status import CheckPhase, CheckResult

logger = logging.getLogger(__name__)

KIND = "metric"

ProviderFactory = Callable[[spec.Metric, CheckContext, Placeholders], MetricProvider]


def _prometheus(metric: spec.Metric, ctx: CheckContext, placeholders: Placeholders) -> MetricProvider:
    assert metric.prometheus is not None
    return prometheus.PrometheusProvider.from_spec(metric.prometheus, placeholders=placeholders,
                                                   management=ctx.management, namespace=ctx.namespace)


def _http_probe(metric: spec.Metric, ctx: CheckContext, placeholders: Placeholders) -> MetricProvider:
    assert metric.http_probe is not None
    return http.HTTPProbeProvider.from_spec(metric.http_probe, placeholders=placeholders)


# Keyed by the metric's field name as users write it.
PROVIDERS: dict[str, ProviderFactory] = {
    "prometheus": _prometheus,
    "httpProbe": _http_probe,
}


def provider_kind(metric: spec.Metric) -> str:
    """The provider field the metric sets (``prometheus`` or ``httpProbe``)."""
    kinds = [kind for kind, config in (("prometheus", metric.prometheus), ("httpProbe", metric.http_probe))
             if config is not None]
    if len(kinds) != 1:
        raise ValueError(f"metric {metric.name!r} needs exactly one provider, found {len(kinds)}")
    return kinds[0]


def build_provider(metric: spec.Metric, *, ctx: CheckContext) -> MetricProvider:
    """The provider measuring ``metric`` for the upgrade in ``ctx``; ValueError for a kind without one."""
    kind = provider_kind(metric)
    factory = PROVIDERS.get(kind)
    if factory is None:
        raise ValueError(f"metric {metric.name!r}: no provider for {kind!r}; known: {', '.join(sorted(PROVIDERS))}")
    return factory(metric, ctx, Placeholders.from_context(ctx))


async def measure_metric(metric: spec.Metric, *, ctx: CheckContext, now: datetime.datetime) -> CheckResult:
    """Measure ``metric`` once (both sides when comparative) and judge it; MetricError gives Inconclusive."""
    def result(phase: CheckPhase, message: str, *, value: float | None = None, green: float | None = None,
               blue: float | None = None) -> CheckResult:
        logger.debug("metric %s: %s: %s", metric.name, phase.value, message)
        return CheckResult(name=metric.name, kind=KIND, phase=phase, time=now, value=value, green_value=green,
                           blue_value=blue, message=message, step=ctx.step, green_weight=ctx.green_weight)

    try:
        provider = build_provider(metric, ctx=ctx)
    except ValueError as exc:
        return result(CheckPhase.INCONCLUSIVE, f"{metric.name}: {exc}")
    unit = _unit(metric)
    if metric.comparative is None:
        try:
            value = await provider.value(cluster=ctx.green)
        except MetricError as exc:
            return result(CheckPhase.INCONCLUSIVE, f"{metric.name}: {exc}")
        phase = judge.judge(metric.threshold_range, value)
        if value is None or phase is CheckPhase.INCONCLUSIVE:
            return result(phase, f"{metric.name}: no value for green ({ctx.green}): an empty result, NaN or Inf")
        return result(phase, f"{metric.name} {judge.describe(metric.threshold_range, value, unit)}", value=value)

    async with asyncio.TaskGroup() as group:
        green_task = group.create_task(_measure(provider, cluster=ctx.green))
        blue_task = group.create_task(_measure(provider, cluster=ctx.blue))
    green, blue = green_task.result(), blue_task.result()
    green_value = None if isinstance(green, MetricError) else green
    blue_value = None if isinstance(blue, MetricError) else blue
    errors = [(side, name, error) for side, name, error in (("green", ctx.green, green), ("blue", ctx.blue, blue))
              if isinstance(error, MetricError)]
    if errors:
        texts = {str(error) for _, _, error in errors}
        if len(errors) == 2 and len(texts) == 1:
            message = f"{metric.name}: {texts.pop()}"
        else:
            message = f"{metric.name}: " + "; ".join(f"{side} ({name}): {error}" for side, name, error in errors)
        return result(CheckPhase.INCONCLUSIVE, message, green=green_value, blue=blue_value)

    mode = metric.comparative.mode
    compared = judge.compare(mode, green=green_value, blue=blue_value)
    if compared is None:
        reason = judge.incomparable(mode, green=green_value, blue=blue_value)
        return result(CheckPhase.INCONCLUSIVE, f"{metric.name}: {reason}", green=green_value, blue=blue_value)
    assert green_value is not None and blue_value is not None
    phase = judge.judge(metric.threshold_range, compared)
    if mode is spec.ComparisonMode.RATIO:
        how, bound_unit = f"{judge.number(compared)}x", ""
    else:
        how, bound_unit = f"{judge.number(abs(compared), unit)} {'more' if compared >= 0 else 'less'} than", unit
    message = (f"{metric.name}: green {judge.number(green_value, unit)} is {how} blue's "
               f"{judge.number(blue_value, unit)}, {judge.relation(metric.threshold_range, compared, bound_unit)}")
    return result(phase, message, value=compared, green=green_value, blue=blue_value)


async def _measure(provider: MetricProvider, *, cluster: str) -> float | MetricError | None:
    try:
        return await provider.value(cluster=cluster)
    except MetricError as exc:
        return exc


def _unit(metric: spec.Metric) -> str:
    """The unit of the metric's values where bluegreen knows it: seconds for a probe's latencies."""
    probe = metric.http_probe
    return "s" if probe is not None and probe.measure is not spec.ProbeMeasure.SUCCESS_RATE else ""
