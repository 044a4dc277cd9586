from __future__ import annotations

import yaml

from bluegreen.workloads import flux_holds
from tests.fixtures.handoff_fleet import ES_HANDOFF, upgrade_spec

ES = flux_holds.HoldTarget(kind="StatefulSet", namespace="search", name="es.data")
USER_PATCH = {"patch": "- op: replace\n  path: /spec/replicas\n  value: 5\n",
              "target": {"kind": "StatefulSet", "name": "es.data"}}


def test_a_hold_is_a_flux_patch_that_sets_zero_replicas_on_that_workload_only() -> None:
    entry = flux_holds.hold_patch(ES, replicas=3, since="2026-05-01T10:00:00Z")

    assert entry["target"] == {"group": "apps", "version": "v1", "kind": "StatefulSet", "name": "es\\.data",
                               "namespace": "search"}
    document = yaml.safe_load(entry["patch"])
    assert document["spec"] == {"replicas": 0}
    assert (document["kind"], document["metadata"]["name"], document["metadata"]["namespace"]) == (
        "StatefulSet", "es.data", "search")
    assert flux_holds.held_target(entry) == ES
    assert flux_holds.record_of(entry) == flux_holds.HoldRecord(replicas=3, since="2026-05-01T10:00:00Z")


def test_green_s_first_hold_records_nothing() -> None:
    assert flux_holds.record_of(flux_holds.hold_patch(ES)) == flux_holds.HoldRecord(replicas=None, since=None)


def test_a_person_s_patch_on_the_same_workload_is_not_a_hold() -> None:
    other = flux_holds.HoldTarget(kind="StatefulSet", namespace="search", name="es-master")
    patches = [USER_PATCH, flux_holds.hold_patch(ES), flux_holds.hold_patch(other), {"patch": "{not yaml"}]

    assert flux_holds.held_target(USER_PATCH) is None
    assert flux_holds.find_hold(patches, ES) is patches[1]
    assert flux_holds.without_holds(patches) == [USER_PATCH, {"patch": "{not yaml"}]
    assert flux_holds.without_holds(patches, [ES]) == [USER_PATCH, patches[2], {"patch": "{not yaml"}]
    assert flux_holds.holds_in(patches, [other, ES]) == [patches[2], patches[1]]


def test_hold_targets_are_the_handoffs_of_the_spec_once_each() -> None:
    job = {"name": "reindex", "at": "AfterPromotion",
           "job": {"template": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}
    again = {**ES_HANDOFF, "name": "es-again", "at": "BeforeRetire"}
    spec = upgrade_spec(ES_HANDOFF, job, again)

    assert flux_holds.hold_targets(spec) == (flux_holds.HoldTarget(kind="StatefulSet", namespace="search",
                                                                   name="es-data"),)


def test_a_cronjob_s_hold_suspends_it_and_records_no_replicas() -> None:
    invoices = flux_holds.HoldTarget(kind="CronJob", namespace="ops", name="invoices")
    entry = flux_holds.hold_patch(invoices, since="2026-05-01T10:00:00Z")

    assert entry["target"] == {"group": "batch", "version": "v1", "kind": "CronJob", "name": "invoices",
                               "namespace": "ops"}
    document = yaml.safe_load(entry["patch"])
    assert (document["apiVersion"], document["kind"], document["spec"]) == ("batch/v1", "CronJob", {"suspend": True})
    assert flux_holds.held_target(entry) == invoices
    assert flux_holds.record_of(entry) == flux_holds.HoldRecord(replicas=None, since="2026-05-01T10:00:00Z")
    assert flux_holds.find_hold([flux_holds.hold_patch(ES), entry], invoices) is entry
