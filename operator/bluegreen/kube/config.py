"""Where a Kubernetes API server is and how to prove who we are: kubeconfig and in-cluster credentials.

The operator reaches three kinds of API servers: the management cluster (from
its service account, or a kubeconfig when run from a laptop), and blue's and
green's clusters (from kubeconfig Secrets written by Cluster API or EKS
Anywhere). All of them end up as one :class:`Connection`.

Rules kept here:

* TLS verification is on unless the kubeconfig says ``insecure-skip-tls-verify``.
* ``exec`` and ``auth-provider`` plugins are refused, as Flux refuses them: a
  kubeconfig stored in a Secret must not make the operator run programs.
* Credentials never appear in ``repr``, logs or error messages: errors name
  the file, context and field, never a value.
* Relative file paths inside a kubeconfig file are relative to that file, as
  kubectl resolves them.
* ``KUBECONFIG`` may list several files separated by ``:``; as in kubectl,
  the first file that defines a name (or ``current-context``) wins.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import pathlib
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

IN_CLUSTER_DIR = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(ValueError):
    """The credentials cannot be loaded or are not supported; the message names the field."""


@dataclasses.dataclass(frozen=True, repr=False)
class Connection:
    """Everything needed to talk to one API server. Secrets are held, never shown."""

    server: str
    ca_data: str | None = None  # PEM
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    client_cert_data: bytes | None = None  # PEM
    client_key_data: bytes | None = None  # PEM
    token: str | None = None
    token_file: pathlib.Path | None = None
    username: str | None = None
    password: str | None = None
    namespace: str | None = None  # the context's default namespace
    source: str = "<dict>"  # where it came from, for messages

    def __repr__(self) -> str:
        auth = (
            "client-certificate" if self.client_cert_data else
            "token" if self.token else
            "tokenFile" if self.token_file else
            "basic" if self.username else
            "none"
        )
        return f"Connection(server={self.server!r}, auth={auth}, source={self.source!r})"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: the cluster's CA (or the system's), the client certificate if any."""
        if self.insecure_skip_tls_verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            try:
                context = ssl.create_default_context(cadata=self.ca_data) if self.ca_data else (
                    ssl.create_default_context()
                )
            except ssl.SSLError as exc:
                raise KubeConfigError(f"{self.source}: certificate-authority is not valid PEM ({exc.reason})") from None
        if self.client_cert_data is not None or self.client_key_data is not None:
            if self.client_cert_data is None or self.client_key_data is None:
                raise KubeConfigError(f"{self.source}: client-certificate and client-key must be given together")
            _load_cert_chain(context, cert=self.client_cert_data, key=self.client_key_data, source=self.source)
        return context

    def bearer_token(self) -> str | None:
        """The token to send now. A token file is read on every call: projected tokens rotate."""
        if self.token:
            return self.token
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                raise KubeConfigError(
                    f"{self.source}: cannot read tokenFile {self.token_file} ({exc.strerror})"
                ) from None
        return None


def _load_cert_chain(context: ssl.SSLContext, *, cert: bytes, key: bytes, source: str) -> None:
    # ssl only loads certificates from files. The files live in a private
    # directory for the duration of the call and are removed at once.
    with tempfile.TemporaryDirectory(prefix="bluegreen-tls-") as directory:
        cert_path = pathlib.Path(directory, "client.crt")
        key_path = pathlib.Path(directory, "client.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
        try:
            context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
        except ssl.SSLError as exc:
            raise KubeConfigError(
                f"{source}: client-certificate/client-key cannot be loaded ({exc.reason})"
            ) from None


def load_kubeconfig(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
) -> Connection:
    """Load a kubeconfig: a parsed dict, a file path, or (None) ``$KUBECONFIG`` / ``~/.kube/config``."""
    if isinstance(source, Mapping):
        return _connection_from_config(dict(source), context=context, base_dir=None, source="<kubeconfig>")
    if source is not None:
        path = pathlib.Path(source).expanduser()
        return _connection_from_config(_read_file(path), context=context, base_dir=path.parent, source=str(path))
    env = os.environ.get("KUBECONFIG", "")
    paths = [pathlib.Path(part).expanduser() for part in env.split(os.pathsep) if part]
    if not paths:
        paths = [pathlib.Path("~/.kube/config").expanduser()]
    existing = [path for path in paths if path.is_file()]
    if not existing:
        where = "$KUBECONFIG" if env else "~/.kube/config"
        raise KubeConfigError(f"no kubeconfig found in {where}")
    return _merge_files(existing, context=context)


def load_kubeconfig_text(text: str | bytes, *, context: str | None = None, source: str = "<kubeconfig>") -> Connection:
    """Load a kubeconfig from YAML text, e.g. the ``value`` of a cluster's kubeconfig Secret."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        raise KubeConfigError(f"{source}: not valid YAML") from None
    if not isinstance(config, dict):
        raise KubeConfigError(f"{source}: not a kubeconfig (expected a mapping with clusters, users, contexts)")
    return _connection_from_config(config, context=context, base_dir=None, source=source)


def load_incluster(directory: pathlib.Path = IN_CLUSTER_DIR, *, environ: Mapping[str, str] | None = None) -> Connection:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``PORT`` and the mounted token and CA."""
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set")
    token_file = directory / "token"
    if not token_file.is_file():
        raise KubeConfigError(f"not in a cluster: no service account token at {token_file}")
    ca_file = directory / "ca.crt"
    namespace_file = directory / "namespace"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return Connection(
        server=f"https://{host}:{port}",
        ca_data=ca_file.read_text() if ca_file.is_file() else None,
        token_file=token_file,
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else None,
        source="in-cluster service account",
    )


def load_default(*, context: str | None = None) -> Connection:
    """A kubeconfig when one is given (``$KUBECONFIG`` or ``~/.kube/config``), else in-cluster credentials."""
    env = os.environ.get("KUBECONFIG", "")
    has_file = any(pathlib.Path(p).expanduser().is_file() for p in env.split(os.pathsep) if p) or (
        not env and pathlib.Path("~/.kube/config").expanduser().is_file()
    )
    if has_file:
        return load_kubeconfig(None, context=context)
    try:
        return load_incluster()
    except KubeConfigError as exc:
        raise KubeConfigError(f"no kubeconfig ($KUBECONFIG, ~/.kube/config) and {exc}") from None


def _read_file(path: pathlib.Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path} ({exc.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        raise KubeConfigError(f"{path}: not valid YAML") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise KubeConfigError(f"{path}: not a kubeconfig (expected a mapping with clusters, users, contexts)")
    return config


def _merge_files(paths: list[pathlib.Path], *, context: str | None) -> Connection:
    # Named entries are merged first-wins; each entry remembers its own file so
    # that its relative paths resolve against the right directory.
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[str]] = {"clusters": set(), "users": set(), "contexts": set()}
    base_dirs: dict[tuple[str, str], pathlib.Path] = {}
    for path in paths:
        config = _read_file(path)
        if "current-context" not in merged and config.get("current-context"):
            merged["current-context"] = config["current-context"]
        for section in ("clusters", "users", "contexts"):
            for entry in config.get(section) or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or name in seen[section]:
                    continue
                seen[section].add(name)
                merged[section].append(entry)
                base_dirs[(section, name)] = path.parent
    source = ":".join(str(path) for path in paths)
    return _connection_from_config(merged, context=context, base_dir=None, source=source, base_dirs=base_dirs)


def _named(config: dict[str, Any], section: str, name: str, *, source: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(section[:-1])
            return body if isinstance(body, dict) else {}
    raise KubeConfigError(f"{source}: no {section[:-1]} named {name!r} in {section}")


def _connection_from_config(
    config: dict[str, Any],
    *,
    context: str | None,
    base_dir: pathlib.Path | None,
    source: str,
    base_dirs: Mapping[tuple[str, str], pathlib.Path] | None = None,
) -> Connection:
    context_name = context or config.get("current-context")
    if not context_name:
        contexts = config.get("contexts") or []
        if len(contexts) != 1:
            raise KubeConfigError(f"{source}: no current-context set and no context given")
        context_name = contexts[0].get("name")
    context_body = _named(config, "contexts", str(context_name), source=source)
    cluster_name = context_body.get("cluster")
    user_name = context_body.get("user")
    if not cluster_name:
        raise KubeConfigError(f"{source}: context {context_name!r} names no cluster")
    cluster = _named(config, "clusters", str(cluster_name), source=source)
    user = _named(config, "users", str(user_name), source=source) if user_name else {}
    dirs = base_dirs or {}
    cluster_dir = dirs.get(("clusters", str(cluster_name)), base_dir)
    user_dir = dirs.get(("users", str(user_name)), base_dir)
    where = f"{source} (context {context_name!r})"

    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeConfigError(f"{where}: cluster {cluster_name!r} has no server")
    if "exec" in user or "auth-provider" in user:
        plugin = "exec" if "exec" in user else "auth-provider"
        raise KubeConfigError(
            f"{where}: user {user_name!r} uses an {plugin} plugin, which bluegreen does not run "
            "(Flux refuses them too); use a kubeconfig with a token or a client certificate"
        )

    ca_data = _pem(cluster, "certificate-authority", base_dir=cluster_dir, where=where)
    cert_data = _pem(user, "client-certificate", base_dir=user_dir, where=where)
    key_data = _pem(user, "client-key", base_dir=user_dir, where=where)
    token_file = user.get("tokenFile")
    return Connection(
        server=server.rstrip("/"),
        ca_data=ca_data.decode() if ca_data is not None else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
        client_cert_data=cert_data,
        client_key_data=key_data,
        token=user.get("token") or None,
        token_file=_resolve(token_file, user_dir) if token_file else None,
        username=user.get("username") or None,
        password=user.get("password") or None,
        namespace=context_body.get("namespace") or None,
        source=where,
    )


def _resolve(path: str, base_dir: pathlib.Path | None) -> pathlib.Path:
    resolved = pathlib.Path(path).expanduser()
    if not resolved.is_absolute() and base_dir is not None:
        resolved = base_dir / resolved
    return resolved


def _pem(section: dict[str, Any], field: str, *, base_dir: pathlib.Path | None, where: str) -> bytes | None:
    """``<field>-data`` (base64 of PEM) wins over ``<field>`` (a file path), as in kubectl."""
    data = section.get(f"{field}-data")
    if data:
        try:
            return base64.b64decode("".join(str(data).split()), validate=True)
        except (binascii.Error, ValueError):
            raise KubeConfigError(f"{where}: {field}-data is not valid base64") from None
    path = section.get(field)
    if path:
        resolved = _resolve(str(path), base_dir)
        try:
            return resolved.read_bytes()
        except OSError as exc:
            raise KubeConfigError(f"{where}: cannot read {field} file {resolved} ({exc.strerror})") from None
    return None
