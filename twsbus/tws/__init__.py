"""The only package that imports ibapi: the TWS session, transport, pacing and callbacks."""
