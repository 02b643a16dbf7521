"""The synchronous chain, built for real so it can be compared with the event flow:
orders, inventory, pricing and payment as small HTTP services, where creating an order
calls inventory, then pricing, then payment, each a blocking call with a timeout (the
course's first diagram). Same stock, tax and payment rules as the order flow."""
