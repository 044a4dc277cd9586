from tests.fixtures.haproxy_world import blue_backend, green_backend, haproxy  # noqa: F401
