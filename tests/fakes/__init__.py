"""Loopback fakes of the CRM APIs the connectors speak: real HTTP servers, the vendors' paths and shapes."""
