"""The environment repository through the git command line.

Why the ``git`` CLI rather than a library: pygit2 needs libgit2 built with
libssh2 for SSH, which wheels do not always carry, and dulwich's SSH goes
through its own client (or paramiko) with its own host-key rules. The CLI is
on every machine that runs Flux-style GitOps (the image installs it), speaks
every transport with the same ``ssh`` people use, and behaves exactly like the
commands a person runs to check what the operator did. Each call is an
``asyncio`` subprocess (no shell, no thread), bounded by the spec's
``git.timeout``; on a timeout or a cancellation its whole process group
(git, ``ssh``, the remote helper) is killed.

How credentials are handled (they must never leave the process except to
the git server):

* they are written, per operation, into a fresh 0700 directory as 0600 files
  and removed when the operation ends; nothing secret goes into argv, the
  URL, the repository's config or the environment;
* HTTPS: ``GIT_ASKPASS`` is a small script that prints the username or the
  password file; ``GIT_TERMINAL_PROMPT=0`` so git never waits for a person;
* SSH: ``-i <identity>``, ``StrictHostKeyChecking=yes`` with
  ``UserKnownHostsFile`` from the Secret and no global known hosts, no agent,
  no user ssh config: a host whose key is not listed is refused, never learned;
* every message made from git's output is scrubbed of the credential values
  and of any ``user:password@`` in URLs before it is raised or logged.

The repository is a bare clone (no working tree): green's directories are
built with plumbing (``ls-tree``, ``hash-object``, ``update-index`` on a
private index, ``write-tree``, ``commit-tree``), so "nothing to change" is
the new tree being the head's tree, and nothing on disk can drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import re
import shlex
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

ZERO_OID = "0" * 40
_INHERITED_ENV = (
    "PATH", "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "TMPDIR",
)
_REVISION_COMMIT = re.compile(r"(?:^|[@:/])([0-9a-f]{40}|[0-9a-f]{64})$")
_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")


class Failure:
    """Why a git call failed, as far as its output tells."""

    HOST_KEY = "host-key"
    AUTH = "auth"
    BAD_KEY = "bad-key"
    NOT_FOUND = "not-found"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    OTHER = "other"


# Checked in order: an SSH host-key failure also says "Could not read from remote repository".
_FAILURE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (Failure.HOST_KEY, re.compile(
        r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key .*(is not known|mismatch)",
        re.IGNORECASE)),
    (Failure.BAD_KEY, re.compile(r"Load key .*: (invalid format|error in libcrypto)|bad permissions",
                                 re.IGNORECASE)),
    (Failure.AUTH, re.compile(
        r"Permission denied \(|Authentication failed|could not read (Username|Password)|"
        r"returned error: 40[13]|Invalid username or password", re.IGNORECASE)),
    (Failure.NOT_FOUND, re.compile(
        r"Repository not found|does not appear to be a git repository|returned error: 404|"
        r"repository '.*' does not exist|not a git repository", re.IGNORECASE)),
    (Failure.UNREACHABLE, re.compile(
        r"Could not resolve host|Connection refused|Failed to connect|Connection timed out|timed out|"
        r"Network is unreachable|No route to host|Connection (closed|reset) by|kex_exchange_identification|"
        r"Could not read from remote repository|ssh: connect to host", re.IGNORECASE)),
)


class GitError(Exception):
    """A git call failed; the message is scrubbed of credentials and ends with git's own words."""

    def __init__(self, message: str, *, kind: str = Failure.OTHER, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


def classify(output: str) -> str:
    """The :class:`Failure` kind that git's (or ssh's) error output shows."""
    for kind, pattern in _FAILURE_PATTERNS:
        if pattern.search(output):
            return kind
    return Failure.OTHER


def summarize(output: str, *, limit: int = 400) -> str:
    """git's (and ssh's) error output cut to the lines that say what failed, on one line."""
    lines = [line.strip().strip("@").strip() for line in output.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line]
    telling = [line for line in lines if line.lower().startswith(("fatal:", "error:", "remote:", "ssh:", "!"))
               or any(pattern.search(line) for _, pattern in _FAILURE_PATTERNS)]
    text = "; ".join(dict.fromkeys(telling or lines))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scheme(url: str) -> str:
    """``ssh``, ``https``, ``http``, ``file`` or ``git``; ``user@host:path`` is ssh."""
    if _SCP_LIKE.match(url):
        return "ssh"
    head, separator, _ = url.partition("://")
    return head.lower() if separator else "file"


def display_url(url: str) -> str:
    """The URL with any password in it replaced, for messages."""
    return _URL_PASSWORD.sub(lambda match: f"{match['scheme']}{match['user']}:***@", url)


def url_has_password(url: str) -> bool:
    return _URL_PASSWORD.search(url) is not None


def revision_commit(revision: str | None) -> str | None:
    """The commit id in a Flux revision: ``main@sha1:<id>``, ``main/<id>``, ``sha1:<id>`` or ``<id>``."""
    if not revision:
        return None
    found = _REVISION_COMMIT.search(revision.strip())
    return found.group(1) if found else None


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a git server wants, in the shapes of Flux's Secret keys. Never printed."""

    identity: bytes | None = None  # SSH private key
    known_hosts: bytes | None = None
    username: str | None = None
    password: str | None = None  # HTTPS password or token
    ca_file: bytes | None = None  # HTTPS certificate authority

    def __repr__(self) -> str:
        present = [field.name for field in dataclasses.fields(self) if getattr(self, field.name)]
        return f"Credentials(<{', '.join(present) or 'none'}>)"

    def secret_values(self) -> tuple[str, ...]:
        """Every text that must not appear in a message: the password, the username, the key's lines."""
        values: list[str] = []
        if self.password:
            values.append(self.password)
        # A very short username ("git") is also a common word; scrubbing it would garble messages.
        if self.username and len(self.username) >= 4:
            values.append(self.username)
        if self.identity:
            text = self.identity.decode(errors="replace")
            values.append(text.strip())
            values.extend(line.strip() for line in text.splitlines()
                          if len(line.strip()) >= 8 and not line.startswith("-----"))
        return tuple(sorted(set(values), key=len, reverse=True))


NO_CREDENTIALS = Credentials()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without the secret values and URL passwords."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return display_url(text)


@dataclasses.dataclass(frozen=True)
class TreeEntry:
    mode: str
    type: str  # blob, tree or commit (a submodule)
    oid: str
    path: str


@dataclasses.dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: bytes
    stderr: str


class Repository:
    """A bare clone of one branch of the environment repository, in ``directory``."""

    def __init__(
        self,
        *,
        url: str,
        branch: str,
        directory: pathlib.Path,
        timeout: float,
        author: tuple[str, str] = ("bluegreen", "bluegreen@bluegreen.io"),
    ) -> None:
        self.url = url
        self.branch = branch
        self.directory = directory
        self.timeout = timeout
        self.author = author
        self._tracking = f"refs/remotes/origin/{branch}"

    @property
    def shown_url(self) -> str:
        return display_url(self.url)

    # --- network operations ----------------------------------------------------------------

    async def remote_head(self, credentials: Credentials) -> str | None:
        """The branch's commit on the server, None when the branch does not exist there."""
        result = await self._run("ls-remote", "--exit-code", self.url, f"refs/heads/{self.branch}",
                                 credentials=credentials, ok=(0, 2), what=f"git ls-remote {self.shown_url}")
        if result.returncode == 2:
            return None
        return result.stdout.decode().split()[0]

    async def remote_branches(self, credentials: Credentials) -> list[str]:
        result = await self._run("ls-remote", "--heads", self.url, credentials=credentials,
                                 what=f"git ls-remote {self.shown_url}")
        return sorted(line.split("\t", 1)[1].removeprefix("refs/heads/")
                      for line in result.stdout.decode().splitlines() if "\t" in line)

    async def fetch(self, credentials: Credentials) -> str:
        """Bring the branch up to date locally; return its head."""
        await self._ensure_clone()
        await self._run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.url,
                        f"+refs/heads/{self.branch}:{self._tracking}",
                        credentials=credentials, what=f"git fetch {self.shown_url} {self.branch}")
        head = await self.local_head()
        if head is None:
            raise GitError(f"branch {self.branch} of {self.shown_url} is empty after a fetch")
        return head

    async def push(self, commit: str, credentials: Credentials) -> bool:
        """Push ``commit`` as the branch's new head, fast-forward only; False when the branch moved meanwhile."""
        what = f"git push {self.shown_url} {self.branch}"
        result = await self._run("push", "--porcelain", self.url, f"{commit}:refs/heads/{self.branch}",
                                 credentials=credentials, ok=(0, 1), what=what)
        if not _pushed(result, credentials=credentials, what=what):
            return False
        await self._run("update-ref", self._tracking, commit)
        return True

    async def push_allowed(self, head: str, credentials: Credentials) -> None:
        """Check write access without changing anything (a dry-run push of ``head``); raise GitError if refused.

        A dry run refused only because the branch moved since ``head`` still proves
        access: the server let these credentials in to receive a push.
        """
        what = f"git push --dry-run {self.shown_url} {self.branch}"
        result = await self._run("push", "--dry-run", "--porcelain", self.url, f"{head}:refs/heads/{self.branch}",
                                 credentials=credentials, ok=(0, 1), what=what)
        _pushed(result, credentials=credentials, what=what)

    # --- local reads -----------------------------------------------------------------------

    async def local_head(self) -> str | None:
        if not (self.directory / "HEAD").exists():
            return None
        result = await self._run("rev-parse", "--verify", "--quiet", f"{self._tracking}^{{commit}}", ok=(0, 1))
        return result.stdout.decode().strip() or None

    async def has_commit(self, oid: str) -> bool:
        if not (self.directory / "HEAD").exists():
            return False
        result = await self._run("cat-file", "-e", f"{oid}^{{commit}}", ok=(0, 1, 128))
        return result.returncode == 0

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = await self._run("merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))
        return result.returncode == 0

    async def exists(self, commit: str, path: str) -> bool:
        result = await self._run("rev-parse", "--verify", "--quiet", f"{commit}:{path}", ok=(0, 1, 128))
        return result.returncode == 0

    async def list_dir(self, commit: str, path: str) -> list[TreeEntry]:
        """The entries directly under ``path`` (empty when it does not exist)."""
        return _parse_tree(await self._run("ls-tree", "-z", commit, "--", f"{path.rstrip('/')}/"))

    async def list_files(self, commit: str, path: str) -> list[TreeEntry]:
        """Every file (blob, symlink, submodule) under ``path``, recursively."""
        return _parse_tree(await self._run("ls-tree", "-r", "-z", commit, "--", f"{path.rstrip('/')}/"))

    async def tree_of(self, commit: str) -> str:
        return (await self._run("rev-parse", f"{commit}^{{tree}}")).stdout.decode().strip()

    async def last_change(self, commit: str, paths: Sequence[str]) -> str | None:
        """The newest commit reachable from ``commit`` that changed any of ``paths``."""
        if not paths:
            return None
        result = await self._run("log", "-1", "--format=%H", commit, "--", *paths)
        return result.stdout.decode().strip() or None

    async def read_blobs(self, oids: Sequence[str]) -> dict[str, bytes]:
        if not oids:
            return {}
        unique = list(dict.fromkeys(oids))
        output = (await self._run("cat-file", "--batch", stdin="".join(f"{oid}\n" for oid in unique).encode())).stdout
        blobs: dict[str, bytes] = {}
        position = 0
        for oid in unique:
            header_end = output.index(b"\n", position)
            header = output[position:header_end].decode().split()
            if len(header) < 3 or header[1] != "blob":
                raise GitError(f"object {oid} is not a blob in {self.shown_url}")
            size = int(header[2])
            blobs[oid] = output[header_end + 1:header_end + 1 + size]
            position = header_end + 1 + size + 1
        return blobs

    # --- local writes ----------------------------------------------------------------------

    async def write_blobs(self, contents: Sequence[bytes]) -> list[str]:
        if not contents:
            return []
        with tempfile.TemporaryDirectory(dir=self.directory, prefix="bluegreen-blobs-") as scratch:
            paths = []
            for index, content in enumerate(contents):
                path = pathlib.Path(scratch) / str(index)
                path.write_bytes(content)
                paths.append(str(path))
            result = await self._run("hash-object", "-w", "--no-filters", "--stdin-paths",
                                     stdin="".join(f"{path}\n" for path in paths).encode())
        return result.stdout.decode().split()

    async def write_tree(self, *, base: str, remove: Sequence[str], add: Sequence[TreeEntry]) -> str:
        """The tree of ``base`` with every file under the ``remove`` directories dropped, then ``add`` added."""
        index = self.directory / f"bluegreen-{uuid.uuid4().hex}.index"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            await self._run("read-tree", base, env=env)
            added = {entry.path for entry in add}
            removed: list[str] = []
            for directory in remove:
                removed.extend(entry.path for entry in await self.list_files(base, directory)
                               if entry.path not in added)
            lines = [f"0 {ZERO_OID}\t{path}" for path in removed]
            lines += [f"{entry.mode} {entry.oid}\t{entry.path}" for entry in add]
            if lines:
                await self._run("update-index", "-z", "--index-info", env=env,
                                stdin="".join(f"{line}\0" for line in lines).encode())
            return (await self._run("write-tree", env=env)).stdout.decode().strip()
        finally:
            index.unlink(missing_ok=True)

    async def commit_tree(self, tree: str, *, parent: str, message: str) -> str:
        name, email = self.author
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        result = await self._run("commit-tree", tree, "-p", parent, "-F", "-", env=identity, stdin=message.encode())
        return result.stdout.decode().strip()

    # --- running git -----------------------------------------------------------------------

    async def _ensure_clone(self) -> None:
        if (self.directory / "HEAD").exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        await self._run("init", "--quiet", "--bare", str(self.directory), cwd=self.directory.parent, bare_dir=False)
        # The clone is the operator's scratch space: no automatic gc pauses in the middle of a sync.
        await self._run("config", "gc.auto", "0")

    async def _run(
        self,
        *args: str,
        credentials: Credentials | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        ok: tuple[int, ...] = (0,),
        what: str | None = None,
        cwd: pathlib.Path | None = None,
        bare_dir: bool = True,
    ) -> _Result:
        command = what or f"git {args[0]}"
        secrets = credentials.secret_values() if credentials is not None else ()
        async with _credential_env(self.directory.parent, credentials, url=self.url,
                                   timeout=self.timeout) as auth_env:
            full_env = _base_env(self.directory.parent)
            if bare_dir:
                full_env["GIT_DIR"] = str(self.directory)
            full_env.update(auth_env)
            full_env.update(env or {})
            result = await run_bounded(["git", *args], env=full_env, stdin=stdin, timeout=self.timeout,
                                       cwd=cwd or self.directory.parent, what=command, secrets=secrets)
        if result.returncode not in ok:
            detail = summarize(scrub(result.stderr or result.stdout.decode(errors="replace"), secrets))
            raise GitError(f"{command} failed: {detail or f'exit code {result.returncode}'}",
                           kind=classify(result.stderr), detail=detail)
        return result


async def run_bounded(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: bytes | None,
    timeout: float,
    cwd: pathlib.Path,
    what: str,
    secrets: Sequence[str] = (),
) -> _Result:
    """Run one command without a shell, killed with its process group after ``timeout`` seconds."""
    logger.debug("running %s", what)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=str(cwd),
        start_new_session=True,  # git's children (ssh, remote helpers) share the group we may kill
    )
    try:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the process ends, and a cancelled upgrade must not go on running git.
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate(stdin)
    except TimeoutError:
        await _kill(process)
        seconds = f"{timeout:g}s"
        raise GitError(f"{what} did not finish within {seconds} (spec.workloads.flux.git.timeout)",
                       kind=Failure.TIMEOUT, detail=f"timed out after {seconds}") from None
    except BaseException:
        await _kill(process)
        raise
    text = stderr.decode(errors="replace")
    logger.debug("%s -> exit code %s", what, process.returncode)
    return _Result(returncode=process.returncode or 0, stdout=stdout, stderr=scrub(text, secrets))


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def _base_env(home: pathlib.Path) -> dict[str, str]:
    # Built from scratch: an inherited GIT_DIR, SSH_ASKPASS or credential helper in the
    # operator's environment must not change what git does or where credentials go.
    env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({
        "HOME": str(home),
        "LC_ALL": "C",  # git's messages are classified by their English words
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    })
    return env


@contextlib.asynccontextmanager
async def _credential_env(
    parent: pathlib.Path, credentials: Credentials | None, *, url: str, timeout: float
) -> AsyncIterator[dict[str, str]]:
    """Environment for one git call; secret files live in a private directory for the call only."""
    if credentials is None:
        yield {}
        return
    directory, env = _write_credentials(parent, credentials, url=url, timeout=timeout)
    try:
        yield env
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_credentials(
    parent: pathlib.Path, credentials: Credentials, *, url: str, timeout: float
) -> tuple[pathlib.Path, dict[str, str]]:
    parent.mkdir(parents=True, exist_ok=True)
    directory = pathlib.Path(tempfile.mkdtemp(prefix="credentials-", dir=parent))  # mode 0700
    env: dict[str, str] = {}
    if scheme(url) == "ssh":
        env["GIT_SSH_COMMAND"] = _ssh_command(directory, credentials, timeout=timeout)
    if credentials.username is not None or credentials.password is not None:
        _private_file(directory / "username", (credentials.username or "git").encode())
        _private_file(directory / "password", (credentials.password or "").encode())
        askpass = directory / "askpass"
        askpass.write_text(
            "#!/bin/sh\n"
            'case "$1" in\n'
            f"  Username*|username*) exec cat {shlex.quote(str(directory / 'username'))} ;;\n"
            f"  *) exec cat {shlex.quote(str(directory / 'password'))} ;;\n"
            "esac\n"
        )
        askpass.chmod(0o700)
        env["GIT_ASKPASS"] = str(askpass)
    if credentials.ca_file:
        _private_file(directory / "ca.crt", credentials.ca_file)
        env["GIT_SSL_CAINFO"] = str(directory / "ca.crt")
    return directory, env


def _ssh_command(directory: pathlib.Path, credentials: Credentials, *, timeout: float) -> str:
    known_hosts = directory / "known_hosts"
    _private_file(known_hosts, credentials.known_hosts or b"")
    options = [
        "ssh", "-F", os.devnull,
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", f"GlobalKnownHostsFile={os.devnull}",
        "-o", "UpdateHostKeys=no",
        "-o", "IdentityAgent=none",
        "-o", "IdentitiesOnly=yes",
        "-o", f"ConnectTimeout={max(1, int(timeout))}",
    ]
    if credentials.identity:
        identity = credentials.identity if credentials.identity.endswith(b"\n") else credentials.identity + b"\n"
        _private_file(directory / "identity", identity)  # ssh refuses a key without a final newline
        options += ["-i", str(directory / "identity")]
    return shlex.join(options)


def _private_file(path: pathlib.Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


def _pushed(result: _Result, *, credentials: Credentials, what: str) -> bool:
    """True when the push went through, False when refused because the branch moved; else GitError."""
    if result.returncode == 0:
        return True
    rejected = [line for line in result.stdout.decode(errors="replace").splitlines() if line.startswith("!")]
    if rejected and all(_moved_meanwhile(line) for line in rejected):
        return False
    detail = "; ".join(line.split("\t")[-1] for line in rejected) or summarize(result.stderr)
    message = scrub(detail, credentials.secret_values())
    raise GitError(f"{what} failed: {message}", kind=classify(result.stderr), detail=message)


def _moved_meanwhile(porcelain_line: str) -> bool:
    # "[rejected] (fetch first)" / "(non-fast-forward)": someone pushed since our fetch.
    # "[remote rejected] (failed to update ref)": they won a race inside the server.
    summary = porcelain_line.split("\t")[-1]
    return ("[rejected]" in summary and ("fetch first" in summary or "non-fast-forward" in summary)) or (
        "[remote rejected]" in summary and ("failed to update ref" in summary or "cannot lock ref" in summary))


def _parse_tree(result: _Result) -> list[TreeEntry]:
    entries = []
    for record in result.stdout.decode(errors="surrogateescape").split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, oid = meta.split(" ")
        entries.append(TreeEntry(mode=mode, type=kind, oid=oid, path=path))
    return entries
