"""mediagate: presigned uploads to S3-compatible storage, scanned and sanitized before use."""
