"""The WireGuard management hub (issue 13): address pool, keys, and the interface reconciled with the database.

Routers behind NAT dial the hub; the portal's API client then connects to the router's tunnel
address. Only `flask tunnel run` / `flask tunnel apply` touch the interface (they need
CAP_NET_ADMIN); the web and worker processes only read and write rows here.
"""
