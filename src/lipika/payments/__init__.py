"""Money in: orders paid through SSLCommerz (or the local demo gateway), subscriptions, seats."""
