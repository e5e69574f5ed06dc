"""The NATS side: endpoints, query execution, leases, publishing."""
