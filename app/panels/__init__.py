"""One module per panel. Panels observe the Session and send user intent upward."""
