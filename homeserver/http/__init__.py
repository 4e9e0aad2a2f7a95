"""HTTP plumbing: router, JSON request parsing, Matrix errors, authentication, CORS, metrics."""
