"""Telling people: the customer's code by SMS once a purchase is active, and alerts to owners.

``outbox`` (the sms_messages rows: queued in the activation's transaction, sent later by the
worker with backoff, within the provider's rate and the owner's monthly cap), ``texts`` (what each
message says, in one GSM-7 part), ``gsm7`` (counting parts), ``accounts`` (whose provider account
sends: the platform's or the owner's own), ``delivery`` (delivery reports, stored raw first),
``alerts`` (owner alerts: at most one per kind per hour, and "all clear"), and ``provider`` (the
only code that talks to Africa's Talking; it knows no tables).
"""
