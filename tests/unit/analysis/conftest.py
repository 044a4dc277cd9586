from tests.fixtures.haproxy_world import blue_backend, green_backend, haproxy  # noqa: F401
from tests.fixtures.prometheus import exporter, haproxy_prometheus, management, prometheus  # noqa: F401
