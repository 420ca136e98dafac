"""What runs on the owner's routers: the activation outbox, routers and their setup, vouchers and
voucher batches, plans and what each router sells."""
