"""Money: starting a purchase, recording what Daraja tells us exactly once, the inbound webhook
log, reconciliation of silent payments, the customer's receipt recovery, and the owner's problems."""
