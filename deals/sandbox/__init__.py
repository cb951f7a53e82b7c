"""A local server that behaves like the Keepa API, for development, tests, benchmarks and demos."""
