"""Where runs live: byte storage (local directory or S3), the flow datastore's records, and which
datastore holds a run."""
