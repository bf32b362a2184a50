"""Work shared by processes and machines: shard claims, named leases, outbox claims, progress."""
