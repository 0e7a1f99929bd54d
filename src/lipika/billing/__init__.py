"""Credits: wallets, an append-only ledger, holds, the price book and plans.

Every paid path goes through `lipika.billing.meter.Meter` and nothing else.
"""
