"""``kubectl bluegreen``: read and steer ClusterUpgrades from a terminal.

kubectl runs ``kubectl-bluegreen`` from PATH for ``kubectl bluegreen ...``
with the rest of the command line. Connection flags mean what they mean to
kubectl and may come before or after the command.

Exit status: 0 done, 1 an error (printed as one ``error:`` line on stderr),
2 a usage error, 130 interrupted (Ctrl-C during ``get --watch``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from bluegreen.cli import cluster, planview, view
from bluegreen.cli.cluster import CliError, Target
from bluegreen.cli.text import Style
from bluegreen.engine.types import ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY

PROG = "kubectl bluegreen"
CLEAR_SCREEN = "\x1b[H\x1b[2J"
WATCH_SEPARATOR = "---"

_DESCRIPTION = """\
Read and steer bluegreen ClusterUpgrades (blue/green upgrades of whole clusters).

The plugin only writes what a person may: the annotations bluegreen.io/promote,
bluegreen.io/abort and bluegreen.io/retry, and spec.paused. The operator acts on
them and reports in status and Events."""

_EPILOG = """\
examples:
  kubectl bluegreen get prod-to-1-31 -n fleet --watch
  kubectl bluegreen promote prod-to-1-31 -n fleet
  kubectl bluegreen plan -f examples/clusterupgrade-capi.yaml
  kubectl bluegreen plan prod-to-1-31 -n fleet"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plan" and (args.name is None) == (args.filename is None):
        parser.error("plan needs NAME (from the cluster) or -f FILE, not both")
    out: TextIO = sys.stdout
    try:
        if args.command == "plan" and args.name is None:
            return run_plan(args, out=out)
        return asyncio.run(run_cluster_command(args, out=out))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    _connection_flags(connection, defaults=None)
    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[connection],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Subcommands repeat the flags with SUPPRESS defaults, so a flag given before
    # the command is not reset by the subcommand's own (absent) copy.
    sub_connection = argparse.ArgumentParser(add_help=False)
    _connection_flags(sub_connection, defaults=argparse.SUPPRESS)

    def command(name: str, summary: str, details: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=f"{summary}\n\n{details}",
                                   parents=[sub_connection], formatter_class=argparse.RawDescriptionHelpFormatter)

    get = command("get", "Show one ClusterUpgrade: phase, steps, weights per router, analysis, conditions, Events.",
                  "The current step is marked with '>'. Per router, the weights are those of the router's latest\n"
                  "setWeights journal entry, marked unverified when the router could not read them back.\n"
                  "A NodePools upgrade shows its rotation instead: the stage, each pool old -> new with its\n"
                  "nodes, the load balancer check, the nodes drained, the node being drained and its last\n"
                  "outcome, the pod whose eviction is refused (Blocking:) and the last evictions.\n"
                  "With --watch the view is redrawn on every change of the object (a watch, not polling)\n"
                  "until Ctrl-C; when the output is not a terminal each new view follows a '---' line.")
    get.add_argument("name", metavar="NAME", help="the ClusterUpgrade")
    get.add_argument("-w", "--watch", action="store_true", help="redraw on every change until Ctrl-C")

    promote = command("promote", "Let the upgrade go on from a pause (annotation bluegreen.io/promote).",
                      "Writes bluegreen.io/promote=step: the current pause step ends (or an inconclusive analysis\n"
                      "that holds the upgrade is accepted) and the next step starts.\n"
                      "With --full, bluegreen.io/promote=full: green goes to 100% at once, skipping the\n"
                      "remaining steps (refused by the operator while green is unhealthy).")
    promote.add_argument("name", metavar="NAME", help="the ClusterUpgrade")
    promote.add_argument("--full", action="store_true", help="skip the remaining steps: green to 100%%")

    abort = command("abort", "Return all traffic to blue (annotation bluegreen.io/abort=true).",
                    "Rolls back as spec.rollback says; green is kept for inspection. Ignored once blue is\n"
                    "being retired. NodePools: draining stops and the old nodes are made schedulable again;\n"
                    "nothing is deleted.")
    abort.add_argument("name", metavar="NAME", help="the ClusterUpgrade")

    retry = command("retry", "Try again after Blocked, Failed or RolledBack (annotation bluegreen.io/retry=true).",
                    "Blocked and Failed run preflight again; RolledBack checks green again and shifts from the\n"
                    "first step. An aborted or failed NodePools rotation goes on from the new pools' check.")
    retry.add_argument("name", metavar="NAME", help="the ClusterUpgrade")

    pause = command("pause", "Hold the upgrade where it is (spec.paused: true).",
                    "A merge patch of spec.paused only. Traffic stays where it is until resume.")
    pause.add_argument("name", metavar="NAME", help="the ClusterUpgrade")
    resume = command("resume", "Let a held upgrade go on (spec.paused: false).",
                     "A merge patch of spec.paused only.")
    resume.add_argument("name", metavar="NAME", help="the ClusterUpgrade")

    plan = command("plan", "Show every action an upgrade would take, in order, with its minimum duration.",
                   "With -f, reads a file (or - for stdin) holding one or more ClusterUpgrades, validates each\n"
                   "spec as the operator does (errors are printed, exit status 1) and prints the plan. No cluster is\n"
                   "contacted. With NAME, reads the ClusterUpgrade from the cluster instead.\n"
                   "When the object has a status (NAME, or `kubectl get -o yaml` output as the file), the plan\n"
                   "starts with the preflight's findings (removed APIs, stateful workloads, problems, capacity) and\n"
                   "the strategy chosen with its reasons; before preflight has run it shows what spec.preflight\n"
                   "asks for. InPlace lists each minor with spec.inPlace.betweenMinors after it; NodePools lists\n"
                   "its stages (new pools, load balancers, cordon, drain one node at a time, pause, scale the\n"
                   "old pools to 0) with spec.nodePools' timeouts; Auto lists both candidate plans until it has\n"
                   "chosen. Hooks appear at their points, with their state.\n"
                   "MINIMUM '-' means the provider, Flux, a Job or a person decides how long.")
    plan.add_argument("name", nargs="?", metavar="NAME", help="a ClusterUpgrade in the cluster (instead of -f)")
    plan.add_argument("-f", "--filename", metavar="FILE", help="a YAML file, or - for stdin")
    return parser


def _connection_flags(parser: argparse.ArgumentParser, *, defaults: object) -> None:
    group = parser.add_argument_group("connection (as for kubectl)")
    group.add_argument("--kubeconfig", default=defaults, metavar="PATH",
                       help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
    group.add_argument("--context", default=defaults, metavar="NAME", help="kubeconfig context to use")
    group.add_argument("-n", "--namespace", default=defaults, metavar="NAMESPACE",
                       help="namespace of the ClusterUpgrade (default: the context's, else default)")


# --- commands ---------------------------------------------------------------------------------


def run_plan(args: argparse.Namespace, *, out: TextIO) -> int:
    source = args.filename
    try:
        text = sys.stdin.read() if source == "-" else _read(source)
        documents = planview.read_documents(text, source="stdin" if source == "-" else source)
    except planview.InputError as exc:
        raise CliError(str(exc)) from None
    style = Style.for_stream(out)
    invalid = [document for document in documents if document.problems]
    for document in invalid:
        sys.stderr.write(planview.render_problems(document, source="stdin" if source == "-" else source))
    if invalid:
        return 1
    out.write("\n".join(planview.render_plan(document, style=style) for document in documents))
    return 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


async def run_cluster_command(args: argparse.Namespace, *, out: TextIO) -> int:
    client, namespace = cluster.connect(kubeconfig_path=args.kubeconfig, context=args.context,
                                        namespace=args.namespace)
    target = Target(client=client, namespace=namespace, name=args.name)
    try:
        if args.command == "get":
            return await run_get(target, watch=args.watch, out=out)
        if args.command == "plan":
            return await run_plan_of(target, out=out)
        return await run_control(target, command=args.command, full=getattr(args, "full", False), out=out)
    finally:
        await client.close()


async def run_plan_of(target: Target, *, out: TextIO) -> int:
    document = planview.document_of(await cluster.get_upgrade(target))
    if document.problems:
        sys.stderr.write(planview.render_problems(document, source=target.client.server))
        return 1
    out.write(planview.render_plan(document, style=Style.for_stream(out), now=datetime.datetime.now(datetime.UTC)))
    return 0


async def run_control(target: Target, *, command: str, full: bool, out: TextIO) -> int:
    if command in ("pause", "resume"):
        paused = command == "pause"
        await cluster.patch_upgrade(target, {"spec": {"paused": paused}})
        out.write(f"clusterupgrade {target.display} patched spec.paused={str(paused).lower()}\n")
        return 0
    key, value = {
        "promote": (ANNOTATION_PROMOTE, "full" if full else "step"),
        "abort": (ANNOTATION_ABORT, "true"),
        "retry": (ANNOTATION_RETRY, "true"),
    }[command]
    await cluster.patch_upgrade(target, {"metadata": {"annotations": {key: value}}})
    out.write(f"clusterupgrade {target.display} annotated {key}={value}\n")
    return 0


async def run_get(target: Target, *, watch: bool, out: TextIO) -> int:
    style = Style.for_stream(out)
    redraw = out.isatty()
    upgrade = await cluster.get_upgrade(target)
    await _show(target, upgrade, out=out, style=style, first=True, redraw=redraw and watch)
    if not watch:
        return 0
    version = str((upgrade.get("metadata") or {}).get("resourceVersion") or "")
    async for kind, changed in cluster.watch_upgrade(target, resource_version=version or None):
        if kind == "DELETED":
            separator = "" if redraw else f"{WATCH_SEPARATOR}\n"
            out.write(f"{separator}clusterupgrade {target.display} deleted\n")
            out.flush()
            return 0
        await _show(target, changed, out=out, style=style, first=False, redraw=redraw)
    return 0


async def _show(
    target: Target, upgrade: Mapping[str, Any], *, out: TextIO, style: Style, first: bool, redraw: bool,
) -> None:
    events = await cluster.events_of(target, upgrade)
    text = view.render(upgrade, events=events, now=datetime.datetime.now(datetime.UTC), style=style)
    if redraw:
        out.write(f"{CLEAR_SCREEN}{text}\n{style.paint('watching for changes; Ctrl-C to stop', 'dim')}\n")
    else:
        out.write(text if first else f"{WATCH_SEPARATOR}\n{text}")
    out.flush()
