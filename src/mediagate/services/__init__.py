"""Use cases: the upload flow for the API and the processing pipeline for the worker."""
