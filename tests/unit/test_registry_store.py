"""Feast's registry file is replaced atomically (serving/registry_store.py): a reader such as
`feast serve` refreshing its registry mid-publish reads the old registry or the new one, never a
truncated file (which made it answer 404 for existing views in benchmarks/read_load.py)."""

from __future__ import annotations

import os

from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

from serving.registry_store import AtomicFileRegistryStore
from serving.store import feature_store
from tests.conftest import write_params
from core.settings import Settings


def test_the_store_uses_the_atomic_registry(tmp_path):
    s = Settings.load(write_params(tmp_path))
    store = feature_store(s)
    assert isinstance(store.registry._registry_store, AtomicFileRegistryStore)


def test_a_registry_write_never_exposes_a_partial_file(tmp_path, monkeypatch):
    class Config:
        path = str(tmp_path / "registry.db")

    store = AtomicFileRegistryStore(Config(), tmp_path)
    old = RegistryProto()
    old.version_id = "old"
    store.update_registry_proto(old)
    before = (tmp_path / "registry.db").read_bytes()
    new = RegistryProto()
    for i in range(2000):  # a registry of a few hundred kB, as many versions' views make
        new.project_metadata.add().project = f"p{i}"
    seen = []
    real_replace = os.replace

    def replace(src, dst):  # the moment before the switch: readers still get the whole old file
        seen.append((tmp_path / "registry.db").read_bytes())
        assert RegistryProto.FromString(open(src, "rb").read()).project_metadata[-1].project == "p1999"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store.update_registry_proto(new)
    assert seen == [before]
    assert len(store.get_registry_proto().project_metadata) == 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]  # no temporary file left
