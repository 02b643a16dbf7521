"""The order flow as faust stream processors: inventory, pricing, payment and order, one
app and one process each. A wing: it imports the floor (ecom) and the contracts
(schemas), never producers/ or consumers/."""
