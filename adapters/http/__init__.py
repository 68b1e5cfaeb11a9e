"""Outbound HTTP to addresses users give us (remote files), behind an SSRF guard."""
