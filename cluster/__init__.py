"""The broker: log storage, replication, produce/fetch, groups; and the local-cluster launcher."""
