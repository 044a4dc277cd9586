"""bluegreen: blue/green upgrades of whole Kubernetes clusters, as a kopf operator."""
