"""Worker processes: one long-lived worker per library runtime, framed npy over pipes."""
