"""Rafka's client API: Producer, Consumer and Admin (sync and asyncio)."""
