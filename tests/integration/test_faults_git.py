"""Flux git mode while the environment repository refuses pushes for a while.

Given the real git server refusing the next pushes (a pre-receive hook, as a
protected branch or a server in maintenance does), when green's copies are
synced, then each attempt fails with the server's own words (what the reconcile
loop shows in ``Progressing=False RetryingAfterError`` and retries with
backoff), and once the server takes pushes again the next attempt fetches,
rebuilds on the head and pushes exactly one commit: no duplicate, nothing lost.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from bluegreen.workloads.flux_git import FluxGitError
from tests.fixtures.gitops import BLUE, GREEN, SECRET, GitOpsFleet, kubeconfig_ref, running_gitops

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.eksa]

REFUSAL = "branch main is frozen for a release; try again later"


@pytest.fixture
async def fleet(tmp_path: pathlib.Path) -> AsyncIterator[GitOpsFleet]:
    async with running_gitops(tmp_path) as running:
        running.put_secret(SECRET, running.http_credentials())
        yield running


async def test_rejected_pushes_fail_with_the_server_s_words_then_one_commit_lands(fleet: GitOpsFleet) -> None:
    workloads = fleet.workloads(fleet.server.http_url)
    before = fleet.server.head()
    assert await workloads.preflight(blue_name=BLUE, green_name=GREEN) == []
    # Given the server refuses the next two pushes
    fleet.server.reject_pushes(2, message=REFUSAL)

    # When green's copies are synced while it refuses, each attempt fails and says why
    for _ in range(2):
        with pytest.raises(FluxGitError) as refused:
            await workloads.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=kubeconfig_ref(GREEN))
        message = str(refused.value)
        assert "pre-receive hook declined" in message or REFUSAL in message, message
        assert fleet.server.head() == before, "a refused push changes nothing"
    assert fleet.server.pushes_to_reject == 0

    # Then the next attempt, with the server taking pushes again, lands exactly one commit on the old head
    journal = await workloads.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=kubeconfig_ref(GREEN))
    head = fleet.server.head()
    assert journal[0].startswith(f"committed {head} "), journal
    assert fleet.server.commit(head).parents == (before,)
    assert [commit.sha for commit in fleet.server.log()][:2] == [head, before]
    assert fleet.server.exists(f"clusters/{GREEN}/apps")
    # and a pass after that (a restarted operator repeating the action) commits nothing more
    assert await workloads.sync_green(blue_name=BLUE, green_name=GREEN,
                                      kubeconfig_secret=kubeconfig_ref(GREEN)) == []
    assert fleet.server.head() == head


async def test_a_refused_push_racing_a_colleague_s_push_keeps_their_commit(fleet: GitOpsFleet) -> None:
    workloads = fleet.workloads(fleet.server.http_url)
    # Given a refused push, and meanwhile a colleague's commit lands on the branch
    fleet.server.reject_pushes(1, message=REFUSAL)
    with pytest.raises(FluxGitError):
        await workloads.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=kubeconfig_ref(GREEN))
    theirs = fleet.server.commit_as_someone_else({"README.md": "hello\n"}, message="a colleague's change")
    # When the operator retries
    await workloads.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=kubeconfig_ref(GREEN))
    # Then its one commit sits on top of theirs
    head = fleet.server.head()
    assert fleet.server.commit(head).parents == (theirs,)
    assert fleet.server.read("README.md") == "hello\n"
