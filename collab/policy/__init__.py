"""Policy: what a connection may do (tokens, origins, limits). Pure: strings and a clock in."""
