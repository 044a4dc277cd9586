"""Reading HAProxy's ``show servers state`` and AWS providerIDs, from replies HAProxy 2.6 really gave."""

from __future__ import annotations

import pytest

from bluegreen.nodepools.attachment import instance_id
from bluegreen.traffic.haproxy_runtime import ServerState, parse_servers_state

pytestmark = pytest.mark.nodepools

HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
          "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
          "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
          "srv_check_addr srv_agent_addr srv_agent_port")
# `show servers state` (every backend) from /usr/sbin/haproxy 2.6: node1 readied at runtime from a
# `disabled` server-template slot, node2 drained, node3 never touched; app/blue a plain server.
ALL_BACKENDS = "\n".join([
    "1",
    HEADER,
    "2 nodes 1 node1 127.0.1.5 2 4 1 1 1 1 0 0 8 0 0 0 - 30080 - 0 0 - - 0",
    "2 nodes 2 node2 127.0.0.1 2 12 1 1 1 1 0 0 8 0 0 0 - 30080 - 0 0 - - 0",
    "2 nodes 3 node3 127.0.0.1 0 5 1 1 3 1 0 0 8 0 0 0 - 30080 - 0 0 - - 0",
    "3 app 1 blue 127.0.0.1 2 0 100 100 3 1 0 2 0 0 0 0 - 1 - 0 0 - - 0",
    "",
    "",
])


def test_rows_of_the_backend_are_read_by_the_header_columns() -> None:
    rows = parse_servers_state(ALL_BACKENDS, backend="nodes")

    assert rows is not None
    assert [(row["srv_name"], row["srv_addr"], row["srv_port"]) for row in rows] == [
        ("node1", "127.0.1.5", "30080"), ("node2", "127.0.0.1", "30080"), ("node3", "127.0.0.1", "30080")]
    assert [ServerState.of(row).why_not_up() for row in rows] == [
        None, "draining (DRAIN)", "in maintenance (MAINT)"]


def test_a_backend_without_servers_is_an_empty_table() -> None:
    assert parse_servers_state("1\n" + HEADER + "\n\n", backend="nodes") == []


@pytest.mark.parametrize("reply", ["Can't find backend.\n\n", "Permission denied\n\n", "", "1\n"])
def test_a_reply_that_is_not_the_table_is_none(reply: str) -> None:
    assert parse_servers_state(reply, backend="nodes") is None


@pytest.mark.parametrize(("op_state", "admin_state", "reason"), [
    (2, 0, None),
    (2, 0x04, None),  # `disabled` in the configuration, made ready at runtime: HAProxy serves it
    (0, 0x01 | 0x04, "in maintenance (MAINT)"),
    (0, 0x02, "in maintenance (MAINT)"),  # inherited from a tracked server
    (0, 0x20, "in maintenance (MAINT)"),  # its address did not resolve
    (2, 0x08, "draining (DRAIN)"),
    (2, 0x10, "draining (DRAIN)"),
    (0, 0, "DOWN (health checks failing)"),
    (1, 0, "starting"),
    (3, 0, "soft-stopping (NOLB)"),
    (7, 0, "in operational state 7"),
])
def test_why_a_server_takes_no_traffic(op_state: int, admin_state: int, reason: str | None) -> None:
    server = ServerState(name="node1", address="127.0.1.5", port="30080", weight=1, op_state=op_state,
                         admin_state=admin_state)

    assert server.why_not_up() == reason


def test_a_row_without_a_needed_column_is_refused() -> None:
    rows = parse_servers_state("1\n# be_name srv_name srv_op_state\nnodes node1 2\n", backend="nodes")

    assert rows is not None
    with pytest.raises(KeyError):
        ServerState.of(rows[0])


@pytest.mark.parametrize(("provider_id", "expected"), [
    ("aws:///us-west-2a/i-0123456789abcdef0", "i-0123456789abcdef0"),
    ("aws:///i-0123456789abcdef0", "i-0123456789abcdef0"),
    ("aws:///us-west-2a/i-0123456789abcdef0/", "i-0123456789abcdef0"),
    ("aws:///us-west-2a/fargate-ip-10-0-1-5", None),
    ("vsphere://4207b6d5-6f6c-4b1c-9a1e-3f7a0c7f1c2d", None),
    ("docker:////prod-md-0-abc", None),
])
def test_the_instance_id_of_a_provider_id(provider_id: str, expected: str | None) -> None:
    assert instance_id(provider_id) == expected
