from tests.fixtures.prometheus import prometheus_spares  # noqa: F401
