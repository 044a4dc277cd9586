"""Flux git mode against a real repository: file://, smart HTTP with basic auth, and SSH.

Given the environment repository with blue's directory (``clusters/prod-blue/``)
and clusters that each run their own (simulated) Flux, when green's copies are
committed, then the repository holds exactly one commit with green's copies and
the substitutions, a concurrent push is kept, problems are found before anything
is created, and green's in-cluster Flux reaches blue's revision.
"""

from __future__ import annotations

import logging
import pathlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bluegreen.engine.types import WorkloadsObservation
from bluegreen.sim import gitserver
from bluegreen.workloads import gitrepo
from bluegreen.workloads.base import WorkloadSync
from bluegreen.workloads.flux_git import REQUESTED_AT, FluxGitError, FluxGitWorkloads
from tests.fixtures.fleet import eventually
from tests.fixtures.gitops import BLUE, GREEN, SECRET, SUBSTITUTIONS, GitOpsFleet, kubeconfig_ref, running_gitops

pytestmark = pytest.mark.eksa

GREEN_KUBECONFIG = kubeconfig_ref(GREEN)
SSH_SKIP = gitserver.ssh_unavailable_reason()


@pytest.fixture
async def fleet(tmp_path: pathlib.Path) -> AsyncIterator[GitOpsFleet]:
    async with running_gitops(tmp_path, ssh=SSH_SKIP is None) as running:
        yield running


def substituted(text: str) -> str:
    for item in SUBSTITUTIONS:
        text = text.replace(item["from"], item["to"])
    return text


def over(fleet: GitOpsFleet, transport: str, **git: Any) -> FluxGitWorkloads:
    """Git mode over one transport, with that transport's credentials in Secret fleet/env-repo."""
    if transport == "file":
        return fleet.workloads(fleet.server.file_url, secret=None, **git)
    if transport == "http":
        fleet.put_secret(SECRET, fleet.http_credentials())
        return fleet.workloads(fleet.server.http_url, **git)
    if SSH_SKIP is not None:
        pytest.skip(f"SSH variant: {SSH_SKIP}")
    fleet.put_secret(SECRET, fleet.ssh_credentials())
    return fleet.workloads(fleet.server.ssh_url, **git)


async def sync(workloads: WorkloadSync) -> list[str]:
    return await workloads.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=GREEN_KUBECONFIG)


# --- committing green's copies ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["file", "http", "ssh"])
async def test_one_commit_holds_green_s_copies_and_a_second_sync_makes_none(
    fleet: GitOpsFleet, transport: str
) -> None:
    workloads = over(fleet, transport)
    before = fleet.server.head()

    assert await workloads.preflight(blue_name=BLUE, green_name=GREEN) == []
    journal = await sync(workloads)
    again = await sync(workloads)

    # Then exactly one commit was added, by the spec's author, on top of the old head
    head = fleet.server.head()
    commit = fleet.server.commit(head)
    assert commit.parents == (before,)
    assert commit.author == "Bluegreen Bot <bot@example.com>"
    assert "fleet/prod-to-1-31" in commit.body
    assert "clusters/prod-blue/apps -> clusters/prod-green/apps" in commit.body
    assert journal[0].startswith(f"committed {head} to ")
    assert again == []
    assert fleet.server.head() == head
    # and green has a copy of every workload directory, but not EKS-A's flux-system
    assert fleet.server.ls("clusters") == [BLUE, GREEN]
    assert fleet.server.ls(f"clusters/{GREEN}") == ["apps", "infra"]
    for directory in ("apps", "infra"):
        names = fleet.server.ls(f"clusters/{BLUE}/{directory}")
        assert fleet.server.ls(f"clusters/{GREEN}/{directory}") == names
        for name in names:
            blue_text = fleet.server.read(f"clusters/{BLUE}/{directory}/{name}")
            assert fleet.server.read(f"clusters/{GREEN}/{directory}/{name}") == substituted(blue_text)
    # with the host names and cluster name of green, and only the declared substitutions
    mapping = fleet.server.read(f"clusters/{GREEN}/apps/workload-mapping.yaml")
    assert "hostname: podinfo.prod-green.example.com" in mapping and "cluster: prod-green" in mapping
    assert "app.kubernetes.io/part-of: prod-blue" in fleet.server.read(f"clusters/{GREEN}/infra/ingress-config.yaml")


async def test_green_s_directory_becomes_an_exact_copy(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "file")
    # Given green's directory with a stale file and an edited one (a person, or an earlier copy)
    fleet.server.commit_as_someone_else({
        f"clusters/{GREEN}/apps/leftover.yaml": "kind: ConfigMap\n",
        f"clusters/{GREEN}/apps/workload-mapping.yaml": "edited by hand\n",
        f"clusters/{GREEN}/flux-system/gotk-sync.yaml": "written by EKS-A\n",
    })

    await sync(workloads)

    assert fleet.server.ls(f"clusters/{GREEN}/apps") == fleet.server.ls(f"clusters/{BLUE}/apps")
    assert "podinfo.prod-green.example.com" in fleet.server.read(f"clusters/{GREEN}/apps/workload-mapping.yaml")
    # what is not copied stays as it was
    assert fleet.server.read(f"clusters/{GREEN}/flux-system/gotk-sync.yaml") == "written by EKS-A\n"


async def test_only_the_listed_paths_are_copied(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "file", paths=["apps"])

    journal = await sync(workloads)

    assert fleet.server.ls(f"clusters/{GREEN}") == ["apps"]
    assert "infra" not in journal[0]


@pytest.mark.parametrize(("when", "posted"), [("advertisement", 1), ("upload", 2)])
async def test_a_push_that_lands_between_fetch_and_push_is_kept(fleet: GitOpsFleet, when: str, posted: int) -> None:
    workloads = over(fleet, "http")
    theirs: list[str] = []

    def eksa_bootstraps_green_and_someone_edits_blue() -> None:
        blue_mapping = fleet.server.read(f"clusters/{BLUE}/apps/workload-mapping.yaml")
        theirs.append(fleet.server.commit_as_someone_else({
            f"clusters/{GREEN}/flux-system/gotk-sync.yaml": "written by EKS-A for green\n",
            f"clusters/{BLUE}/apps/workload-mapping.yaml": blue_mapping + "  timeoutMs: \"5000\"\n",
        }))

    # Given someone pushes after the operator fetched: its git sees their head when it asks for the
    # refs ("fetch first"), or the server finds the branch moved as the operator's pack arrives
    fleet.server.before_next_push(eksa_bootstraps_green_and_someone_edits_blue, when=when)

    journal = await sync(workloads)

    # Then the operator's commit sits on top of theirs: nothing of theirs is lost
    head = fleet.server.head()
    assert journal[0].startswith(f"committed {head} ")
    assert fleet.server.commit(head).parents == (theirs[0],)
    assert fleet.server.read(f"clusters/{GREEN}/flux-system/gotk-sync.yaml") == "written by EKS-A for green\n"
    # and green's copy was rebuilt from blue as it is after their change
    assert "timeoutMs" in fleet.server.read(f"clusters/{GREEN}/apps/workload-mapping.yaml")
    assert fleet.server.pushes == posted


async def test_a_push_racing_preflight_s_access_check_is_not_a_problem(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "http")
    fleet.server.before_next_push(lambda: fleet.server.commit_as_someone_else({"README.md": "hello\n"}),
                                  when="advertisement")

    assert await workloads.preflight(blue_name=BLUE, green_name=GREEN) == []
    assert fleet.server.ls() == ["README.md", "clusters"]  # the race did happen


async def test_a_branch_that_keeps_moving_is_an_error_not_a_force_push(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "http")
    def someone_pushes(attempt: int) -> Callable[[], str]:
        return lambda: fleet.server.commit_as_someone_else({f"clusters/{BLUE}/notes-{attempt}.txt": "busy\n"})

    for attempt in range(10):
        fleet.server.before_next_push(someone_pushes(attempt))

    with pytest.raises(FluxGitError, match=r"kept moving.*nothing is force-pushed"):
        await sync(workloads)

    assert not fleet.server.exists(f"clusters/{GREEN}")
    assert fleet.server.commit(fleet.server.head()).author.startswith("Someone Else")


# --- preflight ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Setup = Callable[[GitOpsFleet], FluxGitWorkloads]


def _http(secret: dict[str, str] | None, *, port: Callable[[], int] | None = None, **git: Any) -> Setup:
    def setup(fleet: GitOpsFleet) -> FluxGitWorkloads:
        if secret is not None:
            fleet.put_secret(SECRET, {key: value.format(user=fleet.server.username, password=fleet.server.password)
                                      for key, value in secret.items()})
        url = fleet.server.http_url if port is None else f"http://127.0.0.1:{port()}/env.git"
        return fleet.workloads(url, **git)
    return setup


def _ssh(**keys: str) -> Setup:
    def setup(fleet: GitOpsFleet) -> FluxGitWorkloads:
        if SSH_SKIP is not None:
            pytest.skip(f"SSH variant: {SSH_SKIP}")
        values = {"identity": fleet.server.ssh_identity, "known_hosts": fleet.server.ssh_known_hosts,
                  "wrong_known_hosts": fleet.server.ssh_wrong_known_hosts,
                  "other_identity": (fleet.server.state_dir / "ssh" / "other_host_key").read_bytes()}
        fleet.put_secret(SECRET, {key: values[source] for key, source in keys.items()})
        return fleet.workloads(fleet.server.ssh_url)
    return setup


def _file(**git: Any) -> Setup:
    return lambda fleet: fleet.workloads(fleet.server.file_url, secret=None, **git)


PREFLIGHT_CASES: list[tuple[str, Setup, str, list[str]]] = [
    ("missing Secret", _http(None), BLUE,
     ["Secret fleet/env-repo (spec.workloads.flux.git.secretRef) does not exist", "create it with username and "
                                                                                  "password"]),
    ("missing password", _http({"username": "{user}"}), BLUE,
     ["Secret fleet/env-repo has no `password`", "a token with write access"]),
    ("wrong password", _http({"username": "{user}", "password": "not-the-password"}), BLUE,
     ["refused the credentials in Secret fleet/env-repo", "check `username` and `password`"]),
    ("read-only user", _http({"username": "reader", "password": "reader-password"}), BLUE,
     ["can read", "cannot push to branch main", "give them write access"]),
    ("unreachable", _http({"username": "{user}", "password": "{password}"}, port=_closed_port), BLUE,
     ["cannot reach http://127.0.0.1:", "check spec.workloads.flux.git.url", "Failed to connect"]),
    ("https without secretRef", lambda fleet: fleet.workloads("https://git.example.invalid/env.git", secret=None),
     BLUE, ["spec.workloads.flux.git.secretRef is required for https URLs", "username and password"]),
    ("password in the URL", lambda fleet: fleet.workloads("https://flux:hunter22@git.example.invalid/env.git"),
     BLUE, ["carries a password", "https://flux:***@git.example.invalid/env.git", "put username and password"]),
    ("no repository there", lambda fleet: fleet.workloads(f"file://{fleet.workdir}/nothing.git", secret=None), BLUE,
     ["no git repository at file://", "fix spec.workloads.flux.git.url"]),
    ("missing branch", _file(branch="mian"), BLUE,
     ["branch 'mian' does not exist", "(branches: main)", "set spec.workloads.flux.git.branch"]),
    ("blue is not in the repository", _file(), "prod-red",
     ["clusters/prod-red/ does not exist", "(clusters/ has: prod-blue)", "check spec.cluster.name"]),
    ("a listed path is missing", _file(paths=["apps", "db"]), BLUE,
     ["clusters/prod-blue/db/ does not exist", "fix spec.workloads.flux.git.paths"]),
    ("flux-system listed", _file(paths=["flux-system"]), BLUE,
     ["'flux-system' is not a workload directory", "flux-system is EKS Anywhere's"]),
    ("wrong root", _file(root="fleet"), BLUE,
     ["fleet/prod-blue/ does not exist", "set spec.workloads.flux.git.root"]),
    ("ssh: missing known_hosts", _ssh(identity="identity"), BLUE,
     ["Secret fleet/env-repo has no `known_hosts`; add the host's key as Flux expects"]),
    ("ssh: missing identity", _ssh(known_hosts="known_hosts"), BLUE,
     ["Secret fleet/env-repo has no `identity`", "deploy key with write access"]),
    ("ssh: wrong host key", _ssh(identity="identity", known_hosts="wrong_known_hosts"), BLUE,
     ["SSH host key of 127.0.0.1:", "`known_hosts` of Secret fleet/env-repo", "add the host's key",
      "Host key verification failed"]),
    ("ssh: unknown key", _ssh(identity="other_identity", known_hosts="known_hosts"), BLUE,
     ["refused the credentials in Secret fleet/env-repo", "check `identity`", "Permission denied"]),
]


@pytest.mark.parametrize(("setup", "blue", "expected"), [case[1:] for case in PREFLIGHT_CASES],
                         ids=[case[0] for case in PREFLIGHT_CASES])
async def test_preflight_names_the_problem_and_the_fix(
    fleet: GitOpsFleet, setup: Setup, blue: str, expected: list[str]
) -> None:
    fleet.server.add_user("reader", "reader-password", read_only=True)
    workloads = setup(fleet)
    before = fleet.server.head()

    problems = await workloads.preflight(blue_name=blue, green_name=GREEN)

    assert len(problems) == 1, problems
    for text in expected:
        assert text in problems[0]
    assert fleet.server.head() == before


async def test_preflight_finds_blue_without_flux(fleet: GitOpsFleet) -> None:
    await fleet.add_cluster(BLUE, flux=False)  # a cluster nobody bootstrapped Flux in

    problems = await over(fleet, "file").preflight(blue_name=BLUE, green_name=GREEN)

    assert problems == [f"blue's cluster {BLUE} does not serve kustomize.toolkit.fluxcd.io/v1; git mode needs Flux "
                        "running in each cluster (EKS Anywhere's gitOpsRef) or use workloads.flux.mode remote"]


async def test_a_sync_with_bad_credentials_fails_with_the_same_explanation(fleet: GitOpsFleet) -> None:
    fleet.put_secret(SECRET, {"username": fleet.server.username, "password": "stale-token"})
    workloads = fleet.workloads(fleet.server.http_url)
    problems = await workloads.preflight(blue_name=BLUE, green_name=GREEN)

    with pytest.raises(FluxGitError) as failure:
        await sync(workloads)

    assert [str(failure.value)] == problems
    assert "refused the credentials in Secret fleet/env-repo" in problems[0]
    assert not fleet.server.exists(f"clusters/{GREEN}")


# --- retirement ---------------------------------------------------------------------------------


async def test_retirement_removes_blue_s_directory_in_one_commit(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "http")
    await sync(workloads)
    synced = fleet.server.head()

    journal = await workloads.delete(side="blue", blue_name=BLUE, green_name=GREEN)
    again = await workloads.delete(side="blue", blue_name=BLUE, green_name=GREEN)

    head = fleet.server.head()
    assert fleet.server.commit(head).parents == (synced,)
    assert journal == [f"committed {head} to {fleet.server.http_url} main: removed clusters/{BLUE} (blue)"]
    assert again == []
    assert fleet.server.head() == head
    assert fleet.server.ls("clusters") == [GREEN]
    assert fleet.server.ls(f"clusters/{GREEN}") == ["apps", "infra"]


async def test_blue_is_kept_while_it_holds_the_only_copy(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "file")
    await workloads.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=GREEN_KUBECONFIG)
    fleet.server.commit_as_someone_else({f"clusters/{GREEN}/infra/{name}": None
                                         for name in fleet.server.ls(f"clusters/{GREEN}/infra")})
    before = fleet.server.head()

    with pytest.raises(FluxGitError, match=r"green has no copy of clusters/prod-blue/infra"):
        await workloads.delete(side="blue", blue_name=BLUE, green_name=GREEN)

    assert fleet.server.head() == before


async def test_abandoning_green_removes_green_s_directory(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "file")
    await sync(workloads)

    journal = await workloads.delete(side="green", blue_name=BLUE, green_name=GREEN)

    assert fleet.server.ls("clusters") == [BLUE]
    assert journal[0].endswith(f"removed clusters/{GREEN} (green)")


# --- observing in-cluster Flux ------------------------------------------------------------------


def in_parity(seen: WorkloadsObservation) -> bool:
    blue = {k.name: k for k in seen.blue}
    pairs = [(blue.get(k.copy_of or ""), k) for k in seen.green]
    return (not seen.green_missing and {"apps", "infra"} <= {k.name for k in seen.green}
            and all(b is not None and b.ready and g.ready and b.revision == g.revision for b, g in pairs))


async def observe_when(workloads: WorkloadSync, predicate: Callable[[WorkloadsObservation], bool],
                       what: str) -> WorkloadsObservation:
    async def check() -> WorkloadsObservation | None:
        seen = await workloads.observe(blue_name=BLUE, green_name=GREEN)
        return seen if predicate(seen) else None
    return await eventually(check, what=what)


async def test_green_s_flux_reaches_blue_s_revision_containing_the_sync_commit(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "http")
    await fleet.add_cluster(BLUE)
    # Given green came up and EKS-A bootstrapped its Flux (green's flux-system directory)
    fleet.server.commit_as_someone_else(
        {path.replace(BLUE, GREEN): text for path, text in gitserver.environment_files(BLUE).items()
         if "/flux-system/" in path}, message="EKS-A: bootstrap Flux for prod-green")
    green = await fleet.add_cluster(GREEN)

    before = await observe_when(workloads, lambda s: len(s.green) == 1 and all(k.ready for k in s.blue + s.green),
                                "blue's Kustomizations and green's flux-system Ready")
    assert [k.name for k in before.blue] == ["apps", "flux-system", "infra"]
    assert [(k.name, k.copy_of) for k in before.green] == [("flux-system", "flux-system")]
    assert before.green_missing == (f"clusters/{GREEN}/apps", f"clusters/{GREEN}/infra")

    # When green's copies are committed while green's Flux is not looking
    await fleet.fluxes[GREEN].stop()
    journal = await sync(workloads)
    sync_commit = fleet.server.head()

    # Then green's Kustomizations do not count until they applied that commit
    waiting = await workloads.observe(blue_name=BLUE, green_name=GREEN)
    assert waiting.green_missing == ()
    assert [(k.name, k.ready, k.reason) for k in waiting.green] == [("flux-system", False, "WaitingForCommit")]
    assert f"waiting for Flux to apply commit {sync_commit[:7]}" in waiting.green[0].message
    # and green's Flux was asked to fetch at once
    assert journal[1] == ("asked green's Flux to fetch now (annotated GitRepository flux-system/flux-system "
                          f"with {REQUESTED_AT})")
    source = green.get("source.toolkit.fluxcd.io/v1/gitrepositories", "flux-system", "flux-system")
    assert source is not None and REQUESTED_AT in source["metadata"]["annotations"]

    # When green's Flux runs again, both sides end Ready at the same revision, which contains the commit
    await fleet.fluxes[GREEN].start()
    seen = await observe_when(workloads, in_parity, "green Ready at blue's revision")
    revisions = {k.revision for k in seen.blue + seen.green}
    assert len(revisions) == 1
    applied = gitrepo.revision_commit(revisions.pop())
    assert applied is not None and fleet.server.is_ancestor(sync_commit, applied)
    assert [(k.name, k.copy_of) for k in seen.green] == [
        ("apps", "apps"), ("flux-system", "flux-system"), ("infra", "infra")]
    # and green's own API server runs green's workloads, with green's host names
    mapping = green.get("v1/configmaps", "podinfo", "workload-mapping")
    assert mapping is not None and mapping["data"]["hostname"] == "podinfo.prod-green.example.com"
    assert green.get("apps/v1/deployments", "podinfo", "podinfo") is not None


async def test_green_s_failing_health_checks_show_flux_s_reason(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "file")
    await fleet.add_cluster(BLUE)
    await fleet.add_cluster(GREEN)
    await sync(workloads)
    await observe_when(workloads, in_parity, "parity")

    fleet.fluxes[GREEN].set_failing(True)

    seen = await observe_when(workloads, lambda s: bool(s.green) and not any(k.ready for k in s.green),
                              "green's health checks failing")
    assert {(k.name, k.reason) for k in seen.green} == {
        ("apps", "HealthCheckFailed"), ("flux-system", "HealthCheckFailed"), ("infra", "HealthCheckFailed")}
    assert all(k.ready for k in seen.blue)


async def test_after_retirement_blue_s_workloads_are_gone_and_blue_is_not_asked(fleet: GitOpsFleet) -> None:
    workloads = over(fleet, "file")
    blue = await fleet.add_cluster(BLUE)
    await fleet.add_cluster(GREEN)
    await sync(workloads)
    await observe_when(workloads, in_parity, "parity")

    await workloads.delete(side="blue", blue_name=BLUE, green_name=GREEN)
    fleet.fluxes[BLUE].poke()

    # Then blue's own Flux prunes what it applied; only bootstrap's Kustomization is left, failing
    async def pruned() -> bool:
        left = [item["metadata"]["name"] for item in blue.list("kustomize.toolkit.fluxcd.io/v1/kustomizations",
                                                               "flux-system")]
        return left == ["flux-system"] and blue.get("v1/configmaps", "podinfo", "workload-mapping") is None
    await eventually(pruned, what="blue's Kustomizations and workloads pruned")
    # and blue's workloads are reported empty even once blue's cluster (and kubeconfig) is gone
    fleet.management.delete("v1/secrets", "eksa-system", f"{BLUE}-kubeconfig")
    seen = await workloads.observe(blue_name=BLUE, green_name=GREEN)
    assert seen.blue == ()
    assert {k.name for k in seen.green} == {"apps", "flux-system", "infra"}


async def test_an_unreadable_repository_does_not_break_the_observation(fleet: GitOpsFleet) -> None:
    await fleet.add_cluster(BLUE)
    fleet.put_secret(SECRET, {"username": fleet.server.username, "password": "wrong"})
    workloads = fleet.workloads(fleet.server.http_url)

    seen = await observe_when(workloads, lambda s: bool(s.blue) and all(k.ready for k in s.blue), "blue Ready")

    assert seen.green == ()
    assert seen.green_missing == (f"clusters/{GREEN}",)


# --- credentials never leave --------------------------------------------------------------------


async def test_no_credential_value_appears_in_logs_errors_journal_or_on_disk(
    fleet: GitOpsFleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_password = "wrong-" + fleet.server.password[::-1]
    identity = fleet.server.ssh_identity.decode()
    secret_values = [fleet.server.password, wrong_password, identity.strip(),
                     *(line for line in identity.splitlines() if line and not line.startswith("-----"))]
    texts: list[str] = []
    await fleet.add_cluster(BLUE)
    await fleet.add_cluster(GREEN)

    # Given the right password: preflight, sync, observe, retire
    workloads = over(fleet, "http")
    texts += await workloads.preflight(blue_name=BLUE, green_name=GREEN)
    texts += await sync(workloads)
    texts.append(repr(await observe_when(workloads, in_parity, "parity")))
    # and a wrong one: every failure shown
    fleet.put_secret(SECRET, {"username": fleet.server.username, "password": wrong_password})
    texts += await workloads.preflight(blue_name=BLUE, green_name=GREEN)
    for action in (sync(workloads), workloads.delete(side="blue", blue_name=BLUE, green_name=GREEN)):
        with pytest.raises(FluxGitError) as failure:
            await action
        texts += [str(failure.value), repr(failure.value)]
    texts.append(repr(await workloads.observe(blue_name=BLUE, green_name=GREEN)))
    # and a password written into the URL, over HTTP and in a spec
    url = fleet.server.http_url.replace("http://", f"http://{fleet.server.username}:{fleet.server.password}@")
    texts += await fleet.workloads(url).preflight(blue_name=BLUE, green_name=GREEN)
    with pytest.raises(FluxGitError) as refused:
        await sync(fleet.workloads(url))
    texts.append(str(refused.value))
    if SSH_SKIP is None:
        # and an SSH key facing a host it does not trust
        fleet.put_secret(SECRET, {"identity": fleet.server.ssh_identity,
                                  "known_hosts": fleet.server.ssh_wrong_known_hosts})
        texts += await fleet.workloads(fleet.server.ssh_url).preflight(blue_name=BLUE, green_name=GREEN)
        with pytest.raises(FluxGitError) as untrusted:
            await sync(fleet.workloads(fleet.server.ssh_url))
        texts.append(str(untrusted.value))

    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    assert len(texts) > 10
    for text in texts:
        for value in secret_values:
            assert value not in text
    # and nothing is left on disk: no credential files, no password in the clone (config, objects, logs)
    assert not list(fleet.workdir.glob("credentials-*"))
    for path in fleet.workdir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert fleet.server.password.encode() not in content and wrong_password.encode() not in content
