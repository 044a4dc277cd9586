"""A real git server for the test world: the environment repository EKS Anywhere's Flux syncs from.

One bare repository (``env.git``) in a state directory, seeded with the layout
EKS Anywhere and its users keep: ``<root>/<cluster>/flux-system/`` (what
EKS-A writes when it bootstraps Flux) and the workloads next to it,
``<root>/<cluster>/apps/`` and ``<root>/<cluster>/infra/``, as real YAML whose
host names and cluster name differ per cluster (the EKS-A blog's
``workload-mapping-a.yaml`` vs ``-b.yaml``). It is served

* over ``file://`` always;
* over smart HTTP on 127.0.0.1 with basic auth: an aiohttp front checks the
  user, refuses pushes from read-only users (403), and runs ``git
  http-backend`` as a CGI for everything else (push enabled);
* over SSH when ``openssh-server`` is installed: Debian's ``sshd`` started by
  hand on a free 127.0.0.1 port with its own host key and one authorized key
  (the current user logs in; git runs ``git-receive-pack`` over it as it does
  against any git host).

The repository refuses non-fast-forward updates and branch deletions
(``receive.denyNonFastForwards``), so a client that force-pushed would fail
loudly here instead of silently dropping someone else's commit.

Tests get a concurrent writer too: :meth:`GitServer.commit_as_someone_else`
commits straight into the bare repository, and
:meth:`GitServer.before_next_push` runs a callback (say, that commit) in the
middle of the next push over HTTP, after the pusher's fetch: either as it asks
for the refs (its git then refuses to push: "fetch first") or as its pack
arrives (the server then refuses the update: "failed to update ref"), the two
ways a real shared repository loses a race.

Helpers (:meth:`head`, :meth:`ls`, :meth:`read`, :meth:`log`) read the
repository directly, never through a server, so they are safe to call from
code running on the same event loop as the HTTP front. This module belongs to
the test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import getpass
import logging
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

logger = logging.getLogger(__name__)

REPOSITORY = "env.git"
SEED_AUTHOR = ("EKS Anywhere", "eksa@example.com")
SOMEONE_ELSE = ("Someone Else", "someone@example.com")
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class SshUnavailable(RuntimeError):
    """sshd cannot be started here; the message says why (for a test's skip reason)."""


def environment_files(cluster: str, *, repo_url: str = "ssh://git@git.example.com/fleet/env.git",
                      branch: str = "main", root: str = "clusters") -> dict[str, str]:
    """One cluster's directory of the environment repository: path -> YAML text."""
    base = f"{root}/{cluster}" if root else cluster
    host = f"{cluster}.example.com"
    return {
        f"{base}/flux-system/gotk-sync.yaml": textwrap.dedent(f"""\
            # Written by EKS Anywhere when it bootstrapped Flux in {cluster}.
            apiVersion: source.toolkit.fluxcd.io/v1
            kind: GitRepository
            metadata:
              name: flux-system
              namespace: flux-system
            spec:
              interval: 1m0s
              ref:
                branch: {branch}
              secretRef:
                name: flux-system
              url: {repo_url}
            ---
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata:
              name: flux-system
              namespace: flux-system
            spec:
              interval: 10m0s
              path: ./{base}
              prune: true
              sourceRef:
                kind: GitRepository
                name: flux-system
            """),
        f"{base}/flux-system/kustomization.yaml": textwrap.dedent("""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - gotk-sync.yaml
            """),
        f"{base}/infra/namespace.yaml": textwrap.dedent("""\
            apiVersion: v1
            kind: Namespace
            metadata:
              name: ingress
            """),
        f"{base}/infra/ingress-config.yaml": textwrap.dedent(f"""\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: ingress-config
              namespace: ingress
              labels:
                app.kubernetes.io/part-of: {cluster}
            data:
              cluster: {cluster}
              publicHostname: ingress.{host}
              loadBalancerClass: metallb
            """),
        f"{base}/apps/namespace.yaml": textwrap.dedent("""\
            apiVersion: v1
            kind: Namespace
            metadata:
              name: podinfo
            """),
        f"{base}/apps/deployment.yaml": textwrap.dedent(f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: podinfo
              namespace: podinfo
              labels:
                app: podinfo
            spec:
              replicas: 2
              selector:
                matchLabels:
                  app: podinfo
              template:
                metadata:
                  labels:
                    app: podinfo
                spec:
                  containers:
                    - name: podinfo
                      image: ghcr.io/stefanprodan/podinfo:6.7.1
                      env:
                        - name: PODINFO_UI_MESSAGE
                          value: "served by cluster: {cluster}"
                      ports:
                        - containerPort: 9898
            """),
        f"{base}/apps/service.yaml": textwrap.dedent("""\
            apiVersion: v1
            kind: Service
            metadata:
              name: podinfo
              namespace: podinfo
            spec:
              selector:
                app: podinfo
              ports:
                - port: 80
                  targetPort: 9898
            """),
        # What differs per cluster, like the seed's workload-mapping-a.yaml / -b.yaml
        # (there an Emissary Mapping; a ConfigMap here so any emulator can hold it).
        f"{base}/apps/workload-mapping.yaml": textwrap.dedent(f"""\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: workload-mapping
              namespace: podinfo
            data:
              cluster: {cluster}
              hostname: podinfo.{host}
              prefix: /
              service: podinfo.podinfo:80
            """),
    }


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str  # "Name <email>"
    subject: str
    body: str


@dataclasses.dataclass
class _User:
    password: str
    read_only: bool = False


class GitServer:
    """The environment repository, on disk and (after :meth:`start`) over HTTP and maybe SSH."""

    def __init__(
        self,
        *,
        state_dir: pathlib.Path,
        clusters: Sequence[str] = ("prod-blue",),
        branch: str = "main",
        root: str = "clusters",
    ) -> None:
        self.state_dir = state_dir
        self.path = state_dir / REPOSITORY
        self.branch = branch
        self.root = root
        self.clusters = tuple(clusters)
        self.username = "flux"
        self.password = secrets.token_urlsafe(18)
        self._users: dict[str, _User] = {self.username: _User(self.password)}
        self._before_push: list[tuple[str, Callable[[], object]]] = []
        self.pushes = 0  # receive-pack requests that reached git http-backend
        self._runner: web.AppRunner | None = None
        self._http_port: int | None = None
        self._sshd: asyncio.subprocess.Process | None = None
        self._ssh_port: int | None = None
        self.ssh_identity: bytes = b""
        self.ssh_known_hosts: bytes = b""
        self.ssh_wrong_known_hosts: bytes = b""  # a known_hosts line for the same address, another key

    # --- lifecycle -------------------------------------------------------------------------

    def create(self) -> None:
        """The bare repository with its first commit (idempotent)."""
        if (self.path / "HEAD").exists():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "--quiet", "--bare", str(self.path)])
        for key, value in (("receive.denyNonFastForwards", "true"), ("receive.denyDeletes", "true"),
                           ("http.receivepack", "true"), ("gc.auto", "0")):
            self._git("config", key, value)
        self._git("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        files: dict[str, str | None] = {}
        for cluster in self.clusters:
            files.update(environment_files(cluster, repo_url=self.file_url, branch=self.branch, root=self.root))
        self.write(files, message="Initial environment: " + ", ".join(self.clusters), author=SEED_AUTHOR)

    async def start(self, *, http: bool = True, ssh: bool = False) -> None:
        self.create()
        if http:
            await self._start_http()
        if ssh:
            await self._start_ssh()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sshd is not None:
            process, self._sshd = self._sshd, None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()

    # --- addresses -------------------------------------------------------------------------

    @property
    def file_url(self) -> str:
        return f"file://{self.path}"

    @property
    def http_url(self) -> str:
        if self._http_port is None:
            raise RuntimeError("the HTTP server is not started")
        return f"http://127.0.0.1:{self._http_port}/{REPOSITORY}"

    @property
    def ssh_url(self) -> str:
        if self._ssh_port is None:
            raise RuntimeError("the SSH server is not started")
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self._ssh_port}{self.path}"

    def add_user(self, name: str, password: str, *, read_only: bool = False) -> None:
        self._users[name] = _User(password, read_only=read_only)

    def before_next_push(self, callback: Callable[[], object], *, when: str = "upload") -> None:
        """Run ``callback`` (say, :meth:`commit_as_someone_else`) during the next HTTP push.

        ``when="upload"``: as the pack arrives, before git applies it, so the
        pusher's update finds the branch moved inside the server ("failed to
        update ref"); a dry-run push never gets there, so a pusher's access
        check cannot use it up. ``when="advertisement"``: as the pusher asks for
        the refs, so its git sees the new head and refuses to push ("fetch
        first"); a dry-run push asks for them too.
        """
        if when not in ("upload", "advertisement"):
            raise ValueError(f"when must be 'upload' or 'advertisement', not {when!r}")
        self._before_push.append((when, callback))

    def reject_pushes(self, times: int, *, message: str = "pushes to this branch are paused by the server") -> None:
        """Refuse the next ``times`` pushes, whatever their transport, with ``message`` (a pre-receive hook:
        git reports "[remote rejected] (pre-receive hook declined)", as for a protected branch); 0 stops it."""
        if times < 0:
            raise ValueError(f"times must not be negative, got {times}")
        hook = self.path / "hooks" / "pre-receive"
        if not hook.exists():
            hook.parent.mkdir(exist_ok=True)
            # The counter lives next to the repository; each refused push takes one from it.
            hook.write_text(textwrap.dedent("""\
                #!/bin/sh
                counter="$(dirname "$0")/../reject-pushes"
                left=$(cat "$counter" 2>/dev/null || echo 0)
                [ "$left" -gt 0 ] 2>/dev/null || exit 0
                echo $((left - 1)) > "$counter"
                cat "$(dirname "$0")/../reject-message" >&2
                exit 1
            """))
            hook.chmod(0o755)
        (self.path / "reject-message").write_text(message + "\n")
        (self.path / "reject-pushes").write_text(f"{times}\n")

    @property
    def pushes_to_reject(self) -> int:
        """How many of the pushes :meth:`reject_pushes` asked to refuse are still to come."""
        counter = self.path / "reject-pushes"
        return int(counter.read_text().strip() or 0) if counter.exists() else 0

    # --- reading and writing the repository directly ---------------------------------------

    def head(self) -> str:
        return self._git("rev-parse", f"refs/heads/{self.branch}").strip()

    def ls(self, path: str = "", *, commit: str | None = None) -> list[str]:
        """Names directly under ``path`` at ``commit`` (default: the branch head)."""
        spec = f"{path.rstrip('/')}/" if path else ""
        output = self._git("ls-tree", "--name-only", "-z", commit or self.head(), *(["--", spec] if spec else []))
        return sorted(name.rsplit("/", 1)[-1] for name in output.split("\0") if name)

    def read(self, path: str, *, commit: str | None = None) -> str:
        return self._git("show", f"{commit or self.head()}:{path}")

    def exists(self, path: str, *, commit: str | None = None) -> bool:
        result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit or self.head()}:{path}"],
                                env=self._env(), capture_output=True, check=False, timeout=30)
        return result.returncode == 0

    def commit(self, sha: str) -> Commit:
        raw = self._git("show", "-s", "--format=%H%n%P%n%an <%ae>%n%s%n%b", sha)
        sha_line, parents, author, subject, body = (raw.split("\n", 4) + [""] * 5)[:5]
        return Commit(sha=sha_line, parents=tuple(parents.split()), author=author, subject=subject, body=body)

    def log(self, limit: int = 20) -> list[Commit]:
        shas = self._git("rev-list", f"--max-count={limit}", f"refs/heads/{self.branch}").split()
        return [self.commit(sha) for sha in shas]

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, descendant], env=self._env(),
                                capture_output=True, check=False, timeout=30)
        return result.returncode == 0

    def write(self, files: Mapping[str, str | None], *, message: str, author: tuple[str, str]) -> str:
        """Commit ``files`` (path -> text, None deletes) on the branch head, as ``author``; return the commit."""
        old = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}", check=False).strip()
        index = self.path / f"sim-{uuid.uuid4().hex}.index"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self._git("read-tree", old or _EMPTY_TREE, env=env)
            lines = []
            for path, text in files.items():
                if text is None:
                    lines.append(f"0 {'0' * 40}\t{path}")
                else:
                    oid = self._git("hash-object", "-w", "--stdin", input_text=text).strip()
                    lines.append(f"100644 {oid}\t{path}")
            self._git("update-index", "-z", "--index-info", env=env, input_text="".join(f"{x}\0" for x in lines))
            tree = self._git("write-tree", env=env).strip()
        finally:
            index.unlink(missing_ok=True)
        name, email = author
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        parents = ["-p", old] if old else []
        sha = self._git("commit-tree", tree, *parents, "-F", "-", env=identity, input_text=message + "\n").strip()
        # With the old value: a push that landed meanwhile makes this fail instead of being overwritten.
        self._git("update-ref", f"refs/heads/{self.branch}", sha, old or "0" * 40)
        return sha

    def commit_as_someone_else(self, files: Mapping[str, str | None], *,
                               message: str = "Someone else's change") -> str:
        return self.write(files, message=message, author=SOMEONE_ELSE)

    # --- HTTP ------------------------------------------------------------------------------

    async def _start_http(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, listener).start()
        self._http_port = listener.getsockname()[1]

    def _user(self, request: web.Request) -> tuple[str, _User] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        user = self._users.get(name)
        if user is None or not secrets.compare_digest(user.password, password):
            return None
        return name, user

    async def _http(self, request: web.Request) -> web.StreamResponse:
        found = self._user(request)
        if found is None:
            return web.Response(status=401, text="authentication required\n",
                                headers={"WWW-Authenticate": 'Basic realm="env"'})
        name, user = found
        pushing = request.query.get("service") == "git-receive-pack" or request.path.endswith("/git-receive-pack")
        if pushing and user.read_only:
            return web.Response(status=403, text=f"{name} may not push\n")
        stage = "advertisement" if request.method == "GET" else "upload"
        if pushing and self._before_push and self._before_push[0][0] == stage:
            self._before_push.pop(0)[1]()
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.state_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": name,
            "REMOTE_ADDR": request.remote or "127.0.0.1",
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.state_dir),
        }
        process = await asyncio.create_subprocess_exec(
            "git", "http-backend", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        output, errors = await process.communicate(body)
        if pushing and request.method == "POST":
            self.pushes += 1
        if errors:
            logger.debug("git http-backend: %s", errors.decode(errors="replace").strip())
        return _cgi_response(output)

    # --- SSH -------------------------------------------------------------------------------

    async def _start_ssh(self) -> None:
        directory = self._prepare_ssh()
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        for attempt in range(5):
            port = _free_port()
            config = directory / "sshd_config"
            config.write_text(textwrap.dedent(f"""\
                Port {port}
                ListenAddress 127.0.0.1
                HostKey {directory / 'host_key'}
                PidFile {directory / 'sshd.pid'}
                AuthorizedKeysFile {directory / 'authorized_keys'}
                AllowUsers {getpass.getuser()}
                PermitRootLogin prohibit-password
                PubkeyAuthentication yes
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                UsePAM no
                StrictModes no
                PrintMotd no
                LogLevel ERROR
                """))
            log = directory / "sshd.log"
            with log.open("ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    sshd, "-D", "-e", "-f", str(config), stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file, stderr=log_file, start_new_session=True)
            if await _wait_for_banner(port, process):
                self._sshd = process
                self._ssh_port = port
                break
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            logger.info("sshd did not start on port %s (attempt %d)", port, attempt + 1)
        else:
            tail = (directory / "sshd.log").read_text(errors="replace")[-500:]
            raise SshUnavailable(f"sshd did not start: {tail.strip() or 'no output'}")
        address = f"[127.0.0.1]:{self._ssh_port}"
        self.ssh_known_hosts = f"{address} {(directory / 'host_key.pub').read_text().strip()}\n".encode()
        self.ssh_wrong_known_hosts = f"{address} {(directory / 'other_host_key.pub').read_text().strip()}\n".encode()

    def _prepare_ssh(self) -> pathlib.Path:
        """Keys and the authorized key for sshd; raises SshUnavailable when sshd cannot run here."""
        reason = ssh_unavailable_reason()
        if reason is not None:
            raise SshUnavailable(reason)
        # Debian's sshd insists on its privilege separation directory (only root gets here without it).
        pathlib.Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        directory = self.state_dir / "ssh"
        directory.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "other_host_key", "client_key"):
            if not (directory / key).exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"bluegreen-sim-{key}",
                      "-f", str(directory / key)])
        (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
        self.ssh_identity = (directory / "client_key").read_bytes()
        return directory

    # --- running git -----------------------------------------------------------------------

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_DIR": str(self.path), "HOME": str(self.state_dir),
               "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
        env.update(extra or {})
        return env

    def _git(self, *args: str, env: Mapping[str, str] | None = None, input_text: str | None = None,
             check: bool = True) -> str:
        result = subprocess.run(["git", *args], env=self._env(env), input=input_text, capture_output=True,
                                text=True, check=False, timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


def ssh_unavailable_reason() -> str | None:
    """Why the SSH variant cannot run here, or None when it can (a cheap check, before starting)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.access(sshd, os.X_OK):
        return "openssh-server is not installed (hack/install-system-deps.sh installs it)"
    if shutil.which("ssh") is None:
        return "the ssh client is not installed"
    if not pathlib.Path("/run/sshd").is_dir() and os.geteuid() != 0:
        return "/run/sshd is missing and only root can create it"
    return None


def _cgi_response(output: bytes) -> web.Response:
    separator = output.find(b"\r\n\r\n")
    width = 4
    if separator < 0 or (0 <= output.find(b"\n\n") < separator):
        separator, width = output.find(b"\n\n"), 2
    if separator < 0:
        return web.Response(status=502, text="git http-backend answered without headers\n")
    status = 200
    headers: dict[str, str] = {}
    for line in output[:separator].decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return web.Response(status=status, body=output[separator + width:], headers=headers)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_for_banner(port: int, process: asyncio.subprocess.Process) -> bool:
    for _ in range(100):
        if process.returncode is not None:
            return False
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            async with asyncio.timeout(5):
                banner = await reader.readline()
        except TimeoutError:
            banner = b""
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return banner.startswith(b"SSH-")
    return False


def _run(argv: Sequence[str]) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
