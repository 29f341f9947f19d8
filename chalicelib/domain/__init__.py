"""The pure domain: models, the execution lifecycle, payload validation and schedules (no AWS)."""
