"""Every embedding test caches into the session's temporary folder, never the user's cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLYFUSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
