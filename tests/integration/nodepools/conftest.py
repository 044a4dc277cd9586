from tests.fixtures.aws_world import aws_relay, aws_world, moto_server  # noqa: F401
from tests.fixtures.haproxy_world import blue_backend, green_backend  # noqa: F401
from tests.fixtures.node_haproxy import node_haproxy  # noqa: F401
