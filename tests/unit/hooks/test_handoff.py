"""The handoff's stages judged from what both sides show (no cluster needed)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from bluegreen.hooks import handoff
from bluegreen.hooks.handoff import Stage, View
from bluegreen.workloads import flux_holds

ES = flux_holds.HoldTarget(kind="StatefulSet", namespace="search", name="es-data")
HELD_AT = "2026-05-01T10:00:00Z"
TIMEOUT = datetime.timedelta(minutes=10)
T0 = datetime.datetime(2026, 5, 1, 10, 0, tzinfo=datetime.UTC)


def kustomization(name: str, *patches: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "fleet"}, "spec": {"patches": list(patches)}}


def workload(spec: int, *, replicas: int = 0, ready: int = 0, current: bool = True,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "es-data", "namespace": "search", "generation": 4, "annotations": annotations or {}},
            "spec": {"replicas": spec},
            "status": {"observedGeneration": 4 if current else 3, "replicas": replicas, "readyReplicas": ready}}


def blue_hold() -> dict[str, Any]:
    return flux_holds.hold_patch(ES, replicas=3, since=HELD_AT)


def view(*, source_ks: tuple[dict[str, Any], ...], destination_ks: tuple[dict[str, Any], ...],
         source: dict[str, Any], destination: dict[str, Any], replicas: int | None = None) -> View:
    return View(source="blue", destination="green", target=ES, source_kustomizations=source_ks,
                destination_kustomizations=destination_ks, source_workload=source, destination_workload=destination,
                replicas=replicas)


GREEN_HELD = (kustomization("apps-green", flux_holds.hold_patch(ES)),)
BLUE_HELD = (kustomization("apps-blue", blue_hold()), kustomization("infra-blue", blue_hold()))
HANDED = {handoff.ANNOTATION_HANDOFF_FROM: f"blue@{HELD_AT}", handoff.ANNOTATION_HANDOFF_REPLICAS: "3",
          handoff.ANNOTATION_HANDOFF_SINCE: "2026-05-01T10:01:00Z"}

STAGES = [
    (view(source_ks=(kustomization("apps-blue"),), destination_ks=GREEN_HELD, source=workload(3, replicas=3, ready=3),
          destination=workload(0)), Stage.NOT_STARTED, "Missing",
     "blue's StatefulSet search/es-data runs 3 replicas; green's StatefulSet search/es-data is not started yet"),
    (view(source_ks=(kustomization("apps-blue", blue_hold()), kustomization("infra-blue")), destination_ks=GREEN_HELD,
          source=workload(3, replicas=3, ready=3), destination=workload(0)), Stage.HOLD_SOURCE, "Running",
     "holding blue's StatefulSet search/es-data at 0 replicas: 1 of 2 Kustomizations hold it, spec.replicas is 3"),
    (view(source_ks=BLUE_HELD, destination_ks=GREEN_HELD, source=workload(0, replicas=2, ready=1),
          destination=workload(0)), Stage.SOURCE_DRAINING, "Running",
     "blue's StatefulSet search/es-data: 2 replicas left"),
    (view(source_ks=BLUE_HELD, destination_ks=GREEN_HELD, source=workload(0, current=False),
          destination=workload(0)), Stage.SOURCE_DRAINING, "Running",
     "blue's StatefulSet search/es-data: waiting for its controller to observe the scale-down"),
    (view(source_ks=BLUE_HELD, destination_ks=GREEN_HELD, source=workload(0), destination=workload(0)),
     Stage.START_DESTINATION, "Running", "blue's StatefulSet search/es-data is down; green's StatefulSet "
                                         "search/es-data is next"),
    (view(source_ks=BLUE_HELD, destination_ks=GREEN_HELD, source=workload(0),
          destination=workload(3, annotations=HANDED)), Stage.RELEASE_DESTINATION, "Running",
     "blue's StatefulSet search/es-data is down; removing green's StatefulSet search/es-data's hold"),
    (view(source_ks=BLUE_HELD, destination_ks=(kustomization("apps-green"),), source=workload(0),
          destination=workload(0, annotations=HANDED)), Stage.SCALE_DESTINATION, "Running",
     "green's StatefulSet search/es-data: spec.replicas is 0, the handoff asks for 3 (Flux sets the manifests' "
     "replicas back when they differ)"),
    (view(source_ks=BLUE_HELD, destination_ks=(kustomization("apps-green"),), source=workload(0),
          destination=workload(3, replicas=2, ready=1, annotations=HANDED)), Stage.DESTINATION_STARTING, "Running",
     "green's StatefulSet search/es-data: 1/3 ready"),
    (view(source_ks=BLUE_HELD, destination_ks=(kustomization("apps-green"),), source=workload(0),
          destination=workload(3, replicas=3, ready=3, annotations=HANDED)), Stage.DONE, "Succeeded",
     "green's StatefulSet search/es-data runs 3 ready replicas; blue's StatefulSet search/es-data is held at 0"),
]


@pytest.mark.parametrize(("seen", "stage", "state", "message"), STAGES, ids=[stage.name for _, stage, _, _ in STAGES])
def test_each_stage_is_read_from_the_clusters(seen: View, stage: Stage, state: str, message: str) -> None:
    assert handoff.stage_of(seen) is stage
    observation = handoff.judge(seen, timeout=TIMEOUT, now=T0 + datetime.timedelta(minutes=2))
    assert (observation.state, observation.message) == (state, message)


def test_a_mark_from_an_earlier_handoff_does_not_count() -> None:
    stale = {**HANDED, handoff.ANNOTATION_HANDOFF_FROM: "blue@2026-04-01T00:00:00Z"}
    seen = view(source_ks=BLUE_HELD, destination_ks=(kustomization("apps-green"),), source=workload(0),
                destination=workload(3, replicas=3, ready=3, annotations=stale))

    assert handoff.stage_of(seen) is Stage.START_DESTINATION


def test_the_destination_reaches_handoff_replicas_else_what_it_ran_else_what_the_source_ran() -> None:
    seen = view(source_ks=BLUE_HELD, destination_ks=GREEN_HELD, source=workload(0), destination=workload(0))
    green_ran = (kustomization("apps-green", flux_holds.hold_patch(ES, replicas=5, since=HELD_AT)),)

    assert seen.destination_target() == 3
    assert dataclasses.replace(seen, destination_kustomizations=green_ran).destination_target() == 5
    assert dataclasses.replace(seen, destination_kustomizations=green_ran, replicas=2).destination_target() == 2


def test_an_unknown_number_of_replicas_fails_naming_the_field() -> None:
    zero = (kustomization("apps-blue", flux_holds.hold_patch(ES, replicas=0, since=HELD_AT)),)
    seen = view(source_ks=zero, destination_ks=GREEN_HELD, source=workload(0), destination=workload(0))

    observation = handoff.judge(seen, timeout=TIMEOUT, now=T0)

    assert observation.state == "Failed" and "set spec.hooks[].handoff.replicas" in observation.message


def test_a_source_that_does_not_stop_in_time_fails_and_green_stays_down() -> None:
    seen = view(source_ks=BLUE_HELD, destination_ks=GREEN_HELD, source=workload(0, replicas=1, ready=1),
                destination=workload(0))

    assert handoff.judge(seen, timeout=TIMEOUT, now=T0 + datetime.timedelta(minutes=9)).state == "Running"
    late = handoff.judge(seen, timeout=TIMEOUT, now=T0 + datetime.timedelta(minutes=11))
    assert (late.state, late.message) == (
        "Failed", "blue's StatefulSet search/es-data: 1 replica left after 10m; green's StatefulSet search/es-data "
                  "was not started")


def test_a_destination_that_does_not_get_ready_in_time_fails() -> None:
    seen = view(source_ks=BLUE_HELD, destination_ks=(kustomization("apps-green"),), source=workload(0),
                destination=workload(3, replicas=3, ready=2, annotations=HANDED))

    late = handoff.judge(seen, timeout=TIMEOUT, now=T0 + datetime.timedelta(minutes=12))

    assert (late.state, late.message) == ("Failed", "green's StatefulSet search/es-data: 2/3 ready after 10m")


# --- CronJob: held means suspended, still running means an active Job, started means unsuspended --------

INVOICES = flux_holds.HoldTarget(kind="CronJob", namespace="ops", name="invoices")
CRON_HANDED = {handoff.ANNOTATION_HANDOFF_FROM: f"blue@{HELD_AT}", handoff.ANNOTATION_HANDOFF_REPLICAS: "1",
               handoff.ANNOTATION_HANDOFF_SINCE: "2026-05-01T10:01:00Z"}


def cron_job(*, suspend: bool | None, active: int = 0, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"schedule": "0 * * * *"}
    if suspend is not None:
        spec["suspend"] = suspend
    jobs = [{"kind": "Job", "namespace": "ops", "name": f"invoices-2960{index}"} for index in range(active)]
    return {"metadata": {"name": "invoices", "namespace": "ops", "generation": 2, "annotations": annotations or {}},
            "spec": spec, "status": {"active": jobs} if jobs else {}}


def cron_view(*, source_ks: tuple[dict[str, Any], ...], destination_ks: tuple[dict[str, Any], ...],
              source: dict[str, Any], destination: dict[str, Any]) -> View:
    return View(source="blue", destination="green", target=INVOICES, source_kustomizations=source_ks,
                destination_kustomizations=destination_ks, source_workload=source, destination_workload=destination)


CRON_BLUE_HELD = (kustomization("apps-blue", flux_holds.hold_patch(INVOICES, since=HELD_AT)),)
CRON_GREEN_HELD = (kustomization("apps-green", flux_holds.hold_patch(INVOICES)),)
CRON_GREEN_FREE = (kustomization("apps-green"),)

CRON_STAGES = [
    (cron_view(source_ks=(kustomization("apps-blue"),), destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=None),
               destination=cron_job(suspend=True)), Stage.NOT_STARTED, "Missing",
     "blue's CronJob ops/invoices runs on its schedule; green's CronJob ops/invoices is not started yet"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=False, active=1),
               destination=cron_job(suspend=True)), Stage.HOLD_SOURCE, "Running",
     "holding blue's CronJob ops/invoices suspended: 1 of 1 Kustomizations hold it, spec.suspend is false"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=True, active=1),
               destination=cron_job(suspend=True)), Stage.SOURCE_DRAINING, "Running",
     "blue's CronJob ops/invoices: 1 Job still running"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=True, active=2),
               destination=cron_job(suspend=True)), Stage.SOURCE_DRAINING, "Running",
     "blue's CronJob ops/invoices: 2 Jobs still running"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=True),
               destination=cron_job(suspend=True)), Stage.START_DESTINATION, "Running",
     "blue's CronJob ops/invoices is suspended and runs no Job; green's CronJob ops/invoices is next"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=True),
               destination=cron_job(suspend=False, annotations=CRON_HANDED)), Stage.RELEASE_DESTINATION, "Running",
     "blue's CronJob ops/invoices is suspended and runs no Job; removing green's CronJob ops/invoices's hold"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_FREE, source=cron_job(suspend=True),
               destination=cron_job(suspend=True, annotations=CRON_HANDED)), Stage.SCALE_DESTINATION, "Running",
     "green's CronJob ops/invoices: spec.suspend is true, the handoff unsuspends it (Flux suspended it again "
     "while it still held it)"),
    (cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_FREE, source=cron_job(suspend=True),
               destination=cron_job(suspend=None, annotations=CRON_HANDED)), Stage.DONE, "Succeeded",
     "green's CronJob ops/invoices runs on its schedule (spec.suspend is false); blue's CronJob ops/invoices is "
     "held suspended"),
]


@pytest.mark.parametrize(("seen", "stage", "state", "message"), CRON_STAGES,
                         ids=[f"{stage.name}-{index}" for index, (_, stage, _, _) in enumerate(CRON_STAGES)])
def test_a_cronjob_s_stages_are_read_from_suspend_and_active_jobs(seen: View, stage: Stage, state: str,
                                                                  message: str) -> None:
    assert handoff.stage_of(seen) is stage
    observation = handoff.judge(seen, timeout=TIMEOUT, now=T0 + datetime.timedelta(minutes=2))
    assert (observation.state, observation.message) == (state, message)


def test_green_s_cronjob_is_unsuspended_whatever_blue_ran_and_blue_s_active_job_times_out() -> None:
    # Blue's CronJob was suspended in its manifests when it was held: green is unsuspended all the same.
    seen = cron_view(source_ks=CRON_BLUE_HELD, destination_ks=CRON_GREEN_HELD, source=cron_job(suspend=True),
                     destination=cron_job(suspend=True))
    assert seen.destination_target() == 1
    assert handoff.RULES["CronJob"].spec_for(1) == {"suspend": False}
    assert handoff.RULES["CronJob"].spec_for(0) == {"suspend": True}

    running = dataclasses.replace(seen, source_workload=cron_job(suspend=True, active=1))
    late = handoff.judge(running, timeout=TIMEOUT, now=T0 + datetime.timedelta(minutes=11))
    assert (late.state, late.message) == (
        "Failed", "blue's CronJob ops/invoices: 1 Job still running after 10m; green's CronJob ops/invoices was not "
                  "started")


def test_a_cronjob_reverse_waits_for_green_s_jobs() -> None:
    green_held = (kustomization("apps-green", flux_holds.hold_patch(INVOICES, since=HELD_AT)),)
    back = View(source="green", destination="blue", target=INVOICES, source_kustomizations=green_held,
                destination_kustomizations=CRON_BLUE_HELD, source_workload=cron_job(suspend=True, active=1),
                destination_workload=cron_job(suspend=True))

    assert handoff.stage_of(back) is Stage.SOURCE_DRAINING
    assert handoff.judge(back, timeout=TIMEOUT, now=T0).message == "green's CronJob ops/invoices: 1 Job still running"
    done = dataclasses.replace(back, source_workload=cron_job(suspend=True))
    assert handoff.stage_of(done) is Stage.START_DESTINATION
