"""Owners and what they manage: accounts, paybills and their Daraja tokens, reports and searches,
the audit log, which rows an owner may see, and key rotation."""
