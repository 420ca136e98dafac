"""App-wide plumbing every other package may use: settings, extensions, the database's dialect
quirks, secrets at rest, short-lived caches, rate limits, security headers, error pages, health."""
