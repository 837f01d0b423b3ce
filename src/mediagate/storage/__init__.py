"""The S3-compatible object store (MinIO in production): object I/O and bucket set-up."""
