"""The delivery pipeline: workflows, who may deploy, where an assembly came from, the smoke check."""
