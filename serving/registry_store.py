"""Feast's file registry, written atomically.

Feast's `FileRegistryStore` rewrites `registry.db` in place (open with truncation, then write), so
a reader that refreshes its registry at that moment, such as `feast serve` every few seconds,
parses an empty or cut-off file: `benchmarks/read_load.py` saw it answer HTTP 404
`FeatureViewNotFoundException` for a view that existed, in the middle of a publish. This store
writes the new registry into a temporary file beside it and renames it over the old one (one
atomic step on POSIX), so every reader sees either the old registry or the new one. Selected by
`registry_store_type` in the Feast config that `serving/store.py` writes; `feast serve` imports
it by that name.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):  # Feast requires the name to end in RegistryStore
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        folder = self._filepath.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self._filepath.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(registry_proto.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._filepath)
        except BaseException:
            os.unlink(tmp)
            raise
