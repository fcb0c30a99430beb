"""The ground floor: what every room and the entry layer share, importing nothing of ours.

`settings` (params.yaml as frozen dataclasses), `schema` (the data contract: partitions, catalog,
sequence files), `atomic` (atomic file and folder writes), `errors` (the user-facing error type),
`hashing`. Rooms (`ingest/`, `validation/`, `training/`, `serving/`, `recall/`, `features/`)
build on it; the entry layer (`precise/`: the `precise` command and the Airflow task bodies,
`dags/`) sits on top and is imported by nothing.
"""
