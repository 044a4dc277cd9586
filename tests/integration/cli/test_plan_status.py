"""``kubectl bluegreen plan NAME``: the plan of an upgrade in the cluster, with what its preflight found.

Given the emulated management cluster of test_plugin with a ClusterUpgrade whose
status is a Blocked preflight, when the installed plugin runs ``plan NAME``, then
it prints the findings, the stateful workloads and the chosen strategy from
status, and the plan, without writing anything.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.integration.cli.test_plugin import (
    INVOCATIONS,
    NAME,
    PLUGIN,
    RESOURCE,
    STATUSES,
    Management,
    plugin,
    start_management,
)

pytestmark = [pytest.mark.integration, pytest.mark.preflight]


@pytest.fixture
async def management(tmp_path: pathlib.Path) -> AsyncIterator[Management]:
    if not PLUGIN.exists():
        pytest.skip(f"{PLUGIN} is not installed; run `pip install -e .` (make venv)")
    emulator, path = await start_management(tmp_path)
    try:
        yield Management(emulator, path)
    finally:
        await emulator.stop()


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
async def test_plan_name_shows_the_preflight_found_in_status(management: Management, invocation: str) -> None:
    recorded = json.loads((STATUSES / "blocked-findings.json").read_text())["object"]
    management.emulator.patch(RESOURCE, "fleet", NAME, {"spec": recorded["spec"]})
    management.emulator.patch(RESOURCE, "fleet", NAME, {"status": recorded["status"]}, subresource="status")
    before = management.upgrade()
    code, out, err = await plugin(management, invocation, "plan", NAME)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"Plan for clusterupgrade fleet/{NAME}: prod-blue -> prod-green at 1.31 (capi, Auto)"
    assert lines[1].startswith("Phase: Blocked: preflight: 3 object(s) use APIs 1.31 no longer serves")
    assert "  Removed APIs: 3 found; removedAPIs Block: the upgrade stops until they are fixed" in lines
    assert any(line.split()[:2] == ["CronJob", "shop/invoices"] and "no handoff" in line for line in lines)
    assert "  Strategy: BlueGreen (chosen by Auto)" in lines
    assert any("step 7/7: setWeight 100 on router edge (haproxy)" in line for line in lines)
    after = management.upgrade()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "plan writes nothing"


async def test_plan_name_of_a_missing_upgrade_is_one_error_line(management: Management) -> None:
    code, out, err = await plugin(management, "direct", "plan", "nope")
    assert (code, out) == (1, "")
    assert err == 'error: clusterupgrade "nope" not found in namespace "fleet"\n'
