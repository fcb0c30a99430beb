"""precise: pre-training sequential recommenders across scenes (PRECISE), as an operated system.

The core package holds what every stage shares: settings (`settings`), the data contract
(`schema`), atomic file writes (`atomic`), errors (`errors`) and the `precise` command (`cli`).
Stages live in their own rooms: `ingest/`, `validation/`, `training/`.
"""

__version__ = "0.1.0"
