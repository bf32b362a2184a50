"""Everything that speaks a protocol to the outside: sources, mail transports, handoff sinks."""
