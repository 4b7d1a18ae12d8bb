"""Registry model, validation and schema tests."""
