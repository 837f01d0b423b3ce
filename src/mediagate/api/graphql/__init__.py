"""GraphQL plumbing: the SDL, scalars, limits, parse -> validate -> execute, error formatting."""
