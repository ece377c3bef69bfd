"""Mail in and out: parsing, screening machines, composing replies."""
