"""A CronJob the stateful scan reports is covered by a CronJob handoff (matched by kind, namespace, name)."""

from __future__ import annotations

import pathlib

import pytest

from bluegreen.kube.client import KubeClient
from bluegreen.sim.kube import KubeEmulator
from tests.unit.preflight.test_run import add_cronjob, blue, client, make_spec, preflight_of

__all__ = ["blue", "client"]  # the fixtures this module uses, from the preflight pass's tests


async def test_a_cronjob_handoff_marks_that_cronjob_only(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path) -> None:
    add_cronjob(blue, "data", "invoices")
    add_cronjob(blue, "data", "backup")
    spec = make_spec(preflight={"stateful": "Handoff"}, hooks=[
        {"name": "move-invoices", "at": "BeforeTraffic",
         "handoff": {"kind": "CronJob", "namespace": "data", "name": "invoices"}},
        {"name": "not-backup", "at": "BeforeTraffic",  # same name, other kind: does not cover the CronJob
         "handoff": {"kind": "Deployment", "namespace": "data", "name": "backup"}}])

    status = await preflight_of(spec, client, tmp_path)

    assert [(w.kind, w.name, w.handoff) for w in status.stateful_workloads] == [
        ("CronJob", "backup", None), ("CronJob", "invoices", "move-invoices")]


def test_a_cronjob_handoff_takes_no_replicas() -> None:
    with pytest.raises(ValueError, match=r"^spec\.hooks\[0\]\.handoff: replicas is for a StatefulSet or Deployment"):
        make_spec(hooks=[{"name": "move-invoices", "at": "BeforeTraffic",
                          "handoff": {"kind": "CronJob", "namespace": "data", "name": "invoices", "replicas": 1}}])
