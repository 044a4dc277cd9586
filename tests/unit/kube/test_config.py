from __future__ import annotations

import base64
import pathlib
import ssl
from typing import Any

import pytest
import yaml

from bluegreen.kube import config

TOKEN = "s3cr3t-token-value"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(*, user: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None,
               namespace: str | None = None, name: str = "one") -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": f"{name}-cluster", "user": f"{name}-user"}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{"name": f"{name}-cluster", "cluster": cluster or {"server": f"https://{name}.example:6443"}}],
        "users": [{"name": f"{name}-user", "user": user if user is not None else {"token": TOKEN}}],
        "contexts": [{"name": name, "context": context}],
    }


def test_a_dict_with_a_token_gives_server_token_and_namespace() -> None:
    connection = config.load_kubeconfig(kubeconfig(namespace="fleet"))

    assert connection.server == "https://one.example:6443"
    assert connection.bearer_token() == TOKEN
    assert connection.namespace == "fleet"


def test_repr_never_shows_the_token() -> None:
    connection = config.load_kubeconfig(kubeconfig())

    assert TOKEN not in repr(connection)
    assert TOKEN not in str(connection)


def test_a_named_context_is_used_instead_of_the_current_one() -> None:
    document = kubeconfig(name="one")
    other = kubeconfig(name="two")
    for section in ("clusters", "users", "contexts"):
        document[section] += other[section]

    assert config.load_kubeconfig(document, context="two").server == "https://two.example:6443"


def test_an_unknown_context_is_an_error_that_names_it() -> None:
    with pytest.raises(config.KubeConfigError, match="no context named 'nope'"):
        config.load_kubeconfig(kubeconfig(), context="nope")


@pytest.mark.parametrize("plugin", [
    {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
    {"auth-provider": {"name": "gcp"}},
])
def test_plugins_are_refused_with_a_message_that_says_what_to_use(plugin: dict[str, Any]) -> None:
    with pytest.raises(config.KubeConfigError, match=r"plugin.*token or a client certificate"):
        config.load_kubeconfig(kubeconfig(user=plugin))


def test_bad_base64_names_the_field_and_not_the_value() -> None:
    with pytest.raises(config.KubeConfigError, match="certificate-authority-data is not valid base64") as caught:
        config.load_kubeconfig(kubeconfig(cluster={"server": "https://x", "certificate-authority-data": "%%%%"}))
    assert "%%%%" not in str(caught.value)


def test_tls_is_verified_unless_the_kubeconfig_says_otherwise() -> None:
    verified = config.load_kubeconfig(kubeconfig()).ssl_context()
    insecure = config.load_kubeconfig(
        kubeconfig(cluster={"server": "https://x:6443", "insecure-skip-tls-verify": True})
    ).ssl_context()

    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    assert insecure.verify_mode == ssl.CERT_NONE


def test_relative_paths_in_a_file_resolve_against_the_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "token").write_text("from-file\n")
    (tmp_path / "certs" / "ca.pem").write_text("not really a cert")
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(
        user={"tokenFile": "certs/token"},
        cluster={"server": "https://x:6443", "certificate-authority": "certs/ca.pem"},
    )))

    connection = config.load_kubeconfig(path)

    assert connection.bearer_token() == "from-file"
    assert connection.ca_data == "not really a cert"


def test_a_token_file_is_read_again_so_rotated_tokens_are_used(tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first")
    connection = config.load_kubeconfig(kubeconfig(user={"tokenFile": str(token_file)}))
    assert connection.bearer_token() == "first"

    token_file.write_text("second")

    assert connection.bearer_token() == "second"


def test_kubeconfig_env_with_several_files_merges_first_wins(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(name="one")
    second = kubeconfig(name="two")
    # The second file redefines one-cluster; the first file's definition must win.
    second["clusters"].append({"name": "one-cluster", "cluster": {"server": "https://shadowed:6443"}})
    second["current-context"] = "two"
    (tmp_path / "a").write_text(yaml.safe_dump(first))
    (tmp_path / "b").write_text(yaml.safe_dump(second))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}:{tmp_path / 'missing'}:{tmp_path / 'b'}")

    assert config.load_kubeconfig().server == "https://one.example:6443"
    assert config.load_kubeconfig(context="two").server == "https://two.example:6443"


def test_home_kube_config_is_the_default(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(yaml.safe_dump(kubeconfig(name="home")))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert config.load_kubeconfig().server == "https://home.example:6443"


def _service_account(directory: pathlib.Path) -> pathlib.Path:
    directory.mkdir()
    (directory / "token").write_text("sa-token")
    (directory / "namespace").write_text("bluegreen-system\n")
    return directory


def test_in_cluster_credentials_come_from_the_environment_and_the_mounted_token(tmp_path: pathlib.Path) -> None:
    directory = _service_account(tmp_path / "sa")

    connection = config.load_incluster(
        directory, environ={"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    )

    assert connection.server == "https://[fd00::1]:443"
    assert connection.bearer_token() == "sa-token"
    assert connection.namespace == "bluegreen-system"


def test_outside_a_cluster_in_cluster_loading_says_why(tmp_path: pathlib.Path) -> None:
    with pytest.raises(config.KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        config.load_incluster(tmp_path, environ={})


def test_load_default_without_any_kubeconfig_explains_both_places(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    with pytest.raises(config.KubeConfigError, match=r"no kubeconfig .*not in a cluster"):
        config.load_default()


def test_kubeconfig_text_from_a_secret_value() -> None:
    text = yaml.safe_dump(kubeconfig(cluster={"server": "https://green:6443",
                                              "certificate-authority-data": _b64("PEM")}))

    connection = config.load_kubeconfig_text(text, source="Secret fleet/green-kubeconfig")

    assert connection.server == "https://green:6443"
    assert connection.ca_data == "PEM"
    assert "Secret fleet/green-kubeconfig" in connection.source


def test_client_certificate_without_a_key_is_refused() -> None:
    connection = config.load_kubeconfig(kubeconfig(user={"client-certificate-data": _b64("CERT")}))

    with pytest.raises(config.KubeConfigError, match="client-certificate and client-key must be given together"):
        connection.ssl_context()
