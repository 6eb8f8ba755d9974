"""The controller quorum: Raft, the metadata state machine and the active-controller logic."""
