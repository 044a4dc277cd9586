"""The command line itself: flags as kubectl has them, ``plan`` from files and stdin, errors, help, colour."""

from __future__ import annotations

import datetime
import io
import json
import pathlib
from typing import Any

import pytest
import yaml

from bluegreen.cli import cluster, main
from bluegreen.cli.text import Style, age, table

ROOT = pathlib.Path(__file__).resolve().parents[3]
CAPI = ROOT / "examples" / "clusterupgrade-capi.yaml"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv", [
    ["-n", "fleet", "--context", "prod", "get", "demo"],
    ["get", "demo", "-n", "fleet", "--context", "prod"],
    ["--namespace", "fleet", "get", "--context", "prod", "demo"],
])
def test_connection_flags_go_before_or_after_the_command(argv: list[str]) -> None:
    args = main.build_parser().parse_args(argv)
    assert (args.command, args.name, args.namespace, args.context, args.kubeconfig) == (
        "get", "demo", "fleet", "prod", None)


def test_promote_is_a_step_unless_full() -> None:
    parser = main.build_parser()
    assert parser.parse_args(["promote", "demo"]).full is False
    assert parser.parse_args(["promote", "demo", "--full"]).full is True


@pytest.mark.parametrize(("command", "phrases"), [
    ("get", ["--watch", "unverified", "Ctrl-C"]),
    ("promote", ["bluegreen.io/promote=step", "--full", "100%"]),
    ("abort", ["bluegreen.io/abort=true"]),
    ("retry", ["bluegreen.io/retry=true", "Blocked"]),
    ("pause", ["spec.paused"]),
    ("resume", ["spec.paused"]),
    ("plan", ["-f", "stdin", "No cluster is", "NAME", "preflight", "betweenMinors", "Hooks"]),
])
def test_every_command_explains_itself(command: str, phrases: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for phrase in phrases:
        assert phrase in text, f"{command} --help does not mention {phrase!r}"
    assert "--kubeconfig" in text and "--namespace" in text


def test_plan_prints_every_action_and_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plan", "-f", str(CAPI)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Plan for clusterupgrade fleet/prod-to-1-31: prod-blue -> prod-green at 1.31 (capi, BlueGreen)"
    table = lines.index("PHASE         MINIMUM  ACTION")
    assert lines[table - 1] == "" and lines[table - 2].startswith("  Strategy: BlueGreen")
    pause = next(line for line in lines if "step 4/7" in line)
    assert pause.split() == ["Shifting", "15m", "step", "4/7:", "pause", "15m"]
    human = next(index for index, line in enumerate(lines) if "step 6/7" in line)
    assert lines[human].split() == ["Shifting", "-", "step", "6/7:", "pause", "until", "promoted"]
    assert lines[human + 1].strip() == "waits for a person: kubectl bluegreen promote", "the note under its action"
    assert "Total minimum: 24h25m, plus 4 wait(s) the world or a person decides (MINIMUM -)" in lines
    assert "\x1b[" not in out, "no colour when not writing to a terminal"
    assert max(len(line) for line in lines) <= 100


def test_plan_reads_stdin_and_several_documents(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    two = (ROOT / "examples" / "routers" / "elbv2.yaml").read_text()
    role = yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}})
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{role}---\n{two}"))
    code, out, _ = run(["plan", "-f", "-"], capsys)
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("Plan for")]
    assert [header.split()[3] for header in headers] == ["fleet/shop-to-1-31:", "fleet/api-to-1-31:"]
    assert [line for line in out.splitlines() if line.startswith("Total minimum")] == [
        "Total minimum: 24h10m, plus 3 wait(s) the world or a person decides (MINIMUM -)",
        "Total minimum: 24h15m, plus 3 wait(s) the world or a person decides (MINIMUM -)",
    ]


def test_an_invalid_spec_prints_what_to_fix_and_exits_1(tmp_path: pathlib.Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest: dict[str, Any] = yaml.safe_load(CAPI.read_text())
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 50}, {"setWeight": 10}]
    manifest["spec"]["promotion"]["retainBlueFor"] = "a day"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code, out, err = run(["plan", "-f", str(path)], capsys)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f"{path}: clusterupgrade fleet/prod-to-1-31 is invalid:"
    assert "  spec.traffic.steps[1].setWeight: 10 is below 50 set by steps[0]; weights must not decrease " \
           "(rollback is automatic): raise it to at least 50 or remove the step" in lines
    assert "  spec.traffic.steps: no step sets weight 100; end the steps with `- setWeight: 100`" in lines
    assert any(line.startswith("  spec.promotion.retainBlueFor: 'a day' is not a duration") for line in lines)


@pytest.mark.parametrize(("content", "message"), [
    ("a: [1, 2\n", "not valid YAML (line 2"),
    ("apiVersion: v1\nkind: ConfigMap\n", "no ClusterUpgrade (bluegreen.io/v1alpha1) in it"),
])
def test_input_that_holds_no_upgrade_is_an_error(content: str, message: str, tmp_path: pathlib.Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "input.yaml"
    path.write_text(content)
    code, _, err = run(["plan", "-f", str(path)], capsys)
    assert code == 1 and err.startswith(f"error: {path}: ") and message in err


def test_a_missing_file_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["plan", "-f", "/nonexistent/upgrade.yaml"], capsys)
    assert (code, err) == (1, "error: cannot read /nonexistent/upgrade.yaml: No such file or directory\n")


def kubeconfig(tmp_path: pathlib.Path, *, namespace: str | None) -> pathlib.Path:
    context: dict[str, Any] = {"cluster": "mgmt", "user": "admin"}
    if namespace:
        context["namespace"] = namespace
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "mgmt", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "admin", "user": {"token": "t"}}],
        "contexts": [{"name": "mgmt", "context": context}, {"name": "other", "context": {**context,
                                                                                         "namespace": "other"}}],
        "current-context": "mgmt",
    }))
    return path


@pytest.mark.parametrize(("context_namespace", "flag", "context", "expected"), [
    ("fleet", None, None, "fleet"),
    ("fleet", "prod", None, "prod"),
    (None, None, None, "default"),
    ("fleet", None, "other", "other"),
])
def test_the_namespace_is_chosen_as_kubectl_does(tmp_path: pathlib.Path, context_namespace: str | None,
                                                 flag: str | None, context: str | None, expected: str) -> None:
    client, namespace = cluster.connect(kubeconfig_path=str(kubeconfig(tmp_path, namespace=context_namespace)),
                                        context=context, namespace=flag)
    assert namespace == expected and client.server == "http://127.0.0.1:1"


def test_kubeconfig_comes_from_the_environment(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, namespace="fleet")))
    _, namespace = cluster.connect(kubeconfig_path=None, context=None, namespace=None)
    assert namespace == "fleet"


def test_a_kubeconfig_problem_is_one_error_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = kubeconfig(tmp_path, namespace=None)
    code, _, err = run(["--kubeconfig", str(path), "--context", "nope", "abort", "demo"], capsys)
    assert (code, err) == (1, f"error: {path}: no context named 'nope' in contexts\n")


def test_an_unreachable_cluster_is_one_error_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["--kubeconfig", str(kubeconfig(tmp_path, namespace=None)), "pause", "demo"], capsys)
    assert code == 1
    assert err.startswith("error: cannot reach the management cluster: PATCH http://127.0.0.1:1/apis/bluegreen.io/")
    assert err.count("\n") == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "no_color", "enabled"), [
    (Terminal(), None, True),
    (Terminal(), "1", False),
    (Terminal(), "", True),  # an empty NO_COLOR does not count (no-color.org)
    (io.StringIO(), None, False),
])
def test_colour_only_on_a_terminal_without_no_color(stream: io.StringIO, no_color: str | None, enabled: bool) -> None:
    environ = {} if no_color is None else {"NO_COLOR": no_color}
    assert Style.for_stream(stream, environ=environ).enabled is enabled


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (185, "3m5s"), (600, "10m"),
    (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (5 * 3600 + 120, "5h2m"), (30 * 3600, "30h"),
    (3 * 86400 + 4 * 3600, "3d4h"), (40 * 86400, "40d"),
])
def test_ages_read_like_kubectls(seconds: int, text: str) -> None:
    assert age(datetime.timedelta(seconds=seconds)) == text


def test_tables_align_on_visible_width_and_leave_the_last_column_unpadded() -> None:
    red = Style(enabled=True).paint("failed", "red")
    lines = table([["a", red, "x"], ["long-name", "ok", "y"]], header=["NAME", "STATE", "NOTE"], indent=0)
    assert lines == ["NAME       STATE   NOTE", f"a          {red}  x", "long-name  ok      y"]


@pytest.mark.parametrize("argv", [["plan"], ["plan", "demo", "-f", str(CAPI)]])
def test_plan_takes_a_name_or_a_file(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main(argv)
    assert exited.value.code == 2
    assert "plan needs NAME (from the cluster) or -f FILE, not both" in capsys.readouterr().err


def test_plan_of_kubectl_get_output_shows_what_the_operator_found(tmp_path: pathlib.Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`kubectl get cu -o yaml` wraps objects in a List; the status it carries is shown."""
    recorded = json.loads((ROOT / "tests" / "unit" / "cli" / "statuses" / "blocked-findings.json").read_text())
    path = tmp_path / "got.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [recorded["object"]]}))
    code, out, err = run(["plan", "-f", str(path)], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith("Phase: Blocked: preflight: 3 object(s)")
    assert "  Removed APIs: 3 found; removedAPIs Block: the upgrade stops until they are fixed" in out.splitlines()
