"""The small public web endpoint that recipients and the website talk to.

One-click unsubscribe (RFC 8058) and its confirmation page, tracked link clicks and opens, and
signed inbound activity events. Built by `leadflow.web.app.create_app(settings)`; served by `leadflow web`.
Imports leads, nurture and connectors, never Prefect.
"""
