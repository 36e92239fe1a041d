"""The use cases: jobs, dispatch, batches, billing, admin; each takes its collaborators."""
