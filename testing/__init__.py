"""Real servers and apps on loopback that the tests and the benchmark both use (no mocks)."""
