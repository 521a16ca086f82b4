"""Read-only queries behind the R Client API."""
