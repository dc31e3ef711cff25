"""Stand-ins for outside services, each a real HTTP server on loopback with the service's shapes."""
