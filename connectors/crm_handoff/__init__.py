"""CRM handoff sinks: each new SQL written into HubSpot, Salesforce or Pipedrive, at most once."""
