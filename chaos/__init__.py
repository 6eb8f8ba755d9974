"""Fault injection, workloads, history checkers and scenarios for Rafka clusters."""
