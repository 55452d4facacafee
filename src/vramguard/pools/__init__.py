"""What makes encoder memory grow, owned: encoder sessions, staging buffers, reference frames."""
