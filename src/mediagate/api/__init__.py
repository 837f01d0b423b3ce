"""The HTTP API: Litestar serving GraphQL (schema-first SDL executed by graphql-core)."""
