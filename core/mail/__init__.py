"""Mail document import."""
