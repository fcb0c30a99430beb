"""The Airflow Assets that chain the DAGs, declared once (the DAG files import them from here).

    precise_data_daily --precise_events--> precise_universal_daily --precise_universal_model-->
    precise_targeted_daily --precise_targeted_models--> precise_publish

Each event's `extra` carries the data day (`flows.data_day` reads it). Only DAG files import this
module (it imports Airflow); the task bodies stay in `precise/flows.py`.
"""

from __future__ import annotations

from airflow.sdk import Asset

from precise.flows import EVENTS, TARGETED, UNIVERSAL

events = Asset(uri=EVENTS, name="precise_events")
universal = Asset(uri=UNIVERSAL, name="precise_universal_model")
targeted = Asset(uri=TARGETED, name="precise_targeted_models")
