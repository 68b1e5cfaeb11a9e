"""Shared contract suites: mixins run by the unit tier on the in-memory adapters and by the
integration tier on the real ones (no test of their own: no adapter)."""
