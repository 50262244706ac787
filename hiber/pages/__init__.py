"""Page transfer beyond the local images dir: CRIU's page server protocol."""
