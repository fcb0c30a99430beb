"""precise: pre-training sequential recommenders across scenes (PRECISE), as an operated system.

This package is the entry layer: the `precise` command (`cli`), the Airflow task bodies (`flows`)
and the status screen (`status`); nothing imports it. What every stage shares is the ground
package `core/`; the stages live in their rooms: `ingest/`, `validation/`, `training/`,
`serving/`, `recall/`, `features/`.
"""

__version__ = "0.1.0"
