"""Exact answers for tests and benchmarks: `oracle` enumerates tiny problems (short sequences,
small vocabularies) where the true distributions are known."""
